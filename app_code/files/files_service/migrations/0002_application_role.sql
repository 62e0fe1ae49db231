-- The role both files services log in as (database_roles.APP_ROLE): IAM database authentication,
-- no password, and only the privileges the services' queries need. Roles belong to the whole
-- server, so it is created only if another database's migration has not already created it.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'files_app') THEN
        CREATE ROLE files_app LOGIN;
    END IF;
    -- rds_iam makes RDS check an IAM token instead of a password ("Creating a database account
    -- using IAM authentication", Amazon RDS User Guide); the local backend creates the same role.
    GRANT rds_iam TO files_app;
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO files_app', current_database());
END
$$;

GRANT USAGE ON SCHEMA public TO files_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON files, file_shares TO files_app;
-- check_schema reads which migrations were applied; it may not change them.
GRANT SELECT ON files_schema_migrations TO files_app;
