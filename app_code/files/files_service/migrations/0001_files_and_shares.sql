-- File metadata and per-file share grants. Object bytes live in S3 under files.object_key.
CREATE TABLE files (
    id            uuid        PRIMARY KEY,
    project_id    text        NOT NULL,
    owner_id      text        NOT NULL,
    object_key    text        NOT NULL UNIQUE,
    file_name     text        NOT NULL,
    content_type  text        NOT NULL,
    size_bytes    bigint      NOT NULL CHECK (size_bytes > 0),
    status        text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'available')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz,
    CHECK ((status = 'available') = (completed_at IS NOT NULL))
);

-- Listing a project's files, newest first, with keyset pagination on (created_at, id).
CREATE INDEX files_project_listing ON files (project_id, created_at DESC, id DESC) WHERE status = 'available';
-- Finding abandoned pending uploads to clean up.
CREATE INDEX files_pending_created ON files (created_at) WHERE status = 'pending';

CREATE TABLE file_shares (
    file_id     uuid        NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    user_id     text        NOT NULL,
    granted_by  text        NOT NULL,
    expires_at  timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (file_id, user_id)
);
