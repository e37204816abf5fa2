"""Apache Airflow provider for RemSvc."""
