"""Motion's files service: file metadata, permissions and pre-signed S3 URLs."""
