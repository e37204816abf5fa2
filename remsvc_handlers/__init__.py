"""The built-in result handlers, each registered in the ``remsvc.handlers`` entry-point
group by the airflow-provider-remsvc distribution:

- ``sorted`` (:func:`remsvc_handlers.sorted.sorted_results`), the default;
- ``dataframe`` (:func:`remsvc_handlers.dataframe.to_dataframe`);
- ``rc_filter`` (:func:`remsvc_handlers.rc_filter.rc_filter`);
- ``verify_hash`` (:func:`remsvc_handlers.verify_hash.verify_hash`);
- ``grouped`` (:func:`remsvc_handlers.grouped.grouped`), for fan-outs over many hosts.

Each works on a fan-out's results too (every result with a ``host``): ``sorted``
keeps hosts in the order they were given, ``dataframe`` adds a ``host`` column,
``rc_filter`` and ``verify_hash`` judge each host's results on their own.

Select them by name (``resolve_handler("dataframe")``); importing these modules
directly is fine too. They are written like any plugin's handler, on the public API of
:mod:`remsvc_core.handlers` only (they read rows in place with ``@reads_result_rows``),
so each of them is an example of it.
"""
