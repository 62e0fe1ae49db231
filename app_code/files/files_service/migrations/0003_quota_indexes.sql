-- Quotas (db.py create_pending): a user's pending uploads and a project's stored bytes are counted
-- on every upload request, under an advisory lock, so these keep the counts off a table scan.
CREATE INDEX files_owner_pending ON files (owner_id, created_at) WHERE status = 'pending';
CREATE INDEX files_project_bytes ON files (project_id) INCLUDE (size_bytes);
