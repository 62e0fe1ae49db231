"""Facts about the files database that the program reads (components/facts.py): who logs in,
how the schema is migrated, and where the image keeps the CA that signs RDS's certificates.

Standard library only, no imports: the program loads this file by path.
"""

# The role both files services log in as, with IAM database authentication (a token per new
# connection, so there is no password to rotate). Created and granted by a migration; it may read
# and write the service's tables and nothing else.
APP_ROLE = "files_app"

# The migration step (`python -m files_service.migrate`): run with the master credential, once per
# release, before the services start; the services only check that the schema is new enough.
MIGRATE_MODULE = "files_service.migrate"

# The Amazon RDS CA bundle in the image (Dockerfile); DATABASE_SSLROOTCERT in the cloud.
RDS_CA_BUNDLE = "/etc/ssl/certs/rds-global-bundle.pem"
