-- What completion pinned: the copy of the uploaded object that downloads are signed for, at a key
-- no upload form can write (routes.stored_key), and the ETag S3 gave the bytes that were checked.
-- NULL for files completed before this migration, whose upload forms have long expired.
ALTER TABLE files ADD COLUMN stored_key text;
ALTER TABLE files ADD COLUMN stored_etag text;
