-- The Prefect server's database beside MLflow's (POSTGRES_DB makes mlflow).
CREATE DATABASE prefect OWNER rft;
