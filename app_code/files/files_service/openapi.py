"""The OpenAPI 3.0 document served at /files/v1/openapi.json.

Written by hand to say exactly what the handlers accept: limits come from the running settings,
and the property-based test (schemathesis) holds the code and this document to each other.
"""

from __future__ import annotations

from typing import Any

from files_service.names import MAX_FILE_NAME_CHARS, PROJECT_ID_RE, USER_ID_RE, UUID_RE
from files_service.routes import API_PREFIX, LIVENESS_PATH, READINESS_PATH
from files_service.settings import Settings

UUID_PATTERN = UUID_RE.pattern
PROJECT_ID_PATTERN = PROJECT_ID_RE.pattern
USER_ID_PATTERN = USER_ID_RE.pattern
MAX_LIST_LIMIT = 200


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Invalid request; the message says why",
        401: "Missing or invalid bearer token",
        403: "Not allowed",
        404: "No such file or share",
        409: "The file is not in a state that allows this",
        413: "Request body too large, or the project's storage quota would be exceeded",
        429: "Too many uploads pending (see Retry-After)",
        500: "The service's own fault (e.g. the file store refused its request); logged, nothing changed",
        503: "Database or object storage temporarily unavailable",
    }
    return {str(code): _json(_ref("Error"), text[code]) for code in codes}


def _param(name: str, where: str, schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required, "schema": schema}


FILE_ID = _param("file_id", "path", {"type": "string", "pattern": UUID_PATTERN})
PROJECT_ID = _param("project_id", "path", {"type": "string", "pattern": PROJECT_ID_PATTERN})
USER_ID = _param("user_id", "path", {"type": "string", "pattern": USER_ID_PATTERN})


def build_openapi(settings: Settings) -> dict[str, Any]:
    timestamp = {"type": "string", "format": "date-time"}
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "required": ["error", "message"],
            "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
        },
        "File": {
            "type": "object",
            "required": [
                "id",
                "project_id",
                "owner_id",
                "file_name",
                "content_type",
                "size_bytes",
                "status",
                "created_at",
                "completed_at",
            ],
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "project_id": {"type": "string"},
                "owner_id": {"type": "string"},
                "file_name": {"type": "string"},
                "content_type": {"type": "string"},
                "size_bytes": {"type": "integer"},
                "status": {"type": "string", "enum": ["pending", "available"]},
                "created_at": timestamp,
                "completed_at": {**timestamp, "nullable": True},
            },
        },
        "UploadRequest": {
            "type": "object",
            "additionalProperties": False,
            "required": ["project_id", "file_name", "content_type", "size_bytes"],
            "properties": {
                "project_id": {"type": "string", "pattern": PROJECT_ID_PATTERN},
                "file_name": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 1024,
                    "description": "Display name only; reduced to one safe path component "
                    f"of at most {MAX_FILE_NAME_CHARS} characters",
                },
                "content_type": {
                    "type": "string",
                    "description": "One of: " + ", ".join(settings.allowed_content_types),
                },
                "size_bytes": {"type": "integer", "minimum": 1, "maximum": settings.max_upload_bytes},
            },
        },
        "UploadTicket": {
            "type": "object",
            "required": ["file", "upload"],
            "properties": {
                "file": _ref("File"),
                "upload": {
                    "type": "object",
                    "required": ["method", "url", "fields", "expires_at"],
                    "description": "POST a multipart/form-data form to `url` with `fields` "
                    "followed by the file as the last field, named `file`",
                    "properties": {
                        "method": {"type": "string", "enum": ["POST"]},
                        "url": {"type": "string"},
                        "fields": {"type": "object", "additionalProperties": {"type": "string"}},
                        "expires_at": timestamp,
                    },
                },
            },
        },
        "FileList": {
            "type": "object",
            "required": ["files", "next_cursor"],
            "properties": {
                "files": {"type": "array", "items": _ref("File")},
                "next_cursor": {"type": "string", "nullable": True},
            },
        },
        "DownloadTicket": {
            "type": "object",
            "required": ["url", "method", "expires_at", "file_name", "content_type", "size_bytes"],
            "properties": {
                "url": {"type": "string"},
                "method": {"type": "string", "enum": ["GET"]},
                "expires_at": timestamp,
                "file_name": {"type": "string"},
                "content_type": {"type": "string"},
                "size_bytes": {"type": "integer"},
            },
        },
        "ShareRequest": {
            "type": "object",
            "additionalProperties": False,
            "required": ["expires_at"],
            "properties": {"expires_at": {**timestamp, "description": "Must be in the future"}},
        },
        "Share": {
            "type": "object",
            "required": ["file_id", "user_id", "granted_by", "expires_at", "created_at"],
            "properties": {
                "file_id": {"type": "string", "format": "uuid"},
                "user_id": {"type": "string"},
                "granted_by": {"type": "string"},
                "expires_at": timestamp,
                "created_at": timestamp,
            },
        },
        "ShareList": {
            "type": "object",
            "required": ["shares"],
            "properties": {"shares": {"type": "array", "items": _ref("Share")}},
        },
        "Health": {
            "type": "object",
            "required": ["status"],
            "properties": {
                "status": {"type": "string"},
                "role": {"type": "string"},
                # Readiness only: each dependency, "ok" or what is wrong with it.
                "checks": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
    }
    download_op = {
        "summary": "A short-lived pre-signed GET URL for the file (attachment disposition)",
        "description": "Allowed for the owner, members of the file's project and users with an unexpired share.",
        "parameters": [FILE_ID],
        "responses": {
            "200": _json(_ref("DownloadTicket"), "Pre-signed URL"),
            **_errors(400, 401, 403, 404, 409, 503),
        },
    }
    paths: dict[str, Any] = {
        f"{API_PREFIX}/uploads": {
            "post": {
                "operationId": "request_upload",
                "summary": "Register a pending upload and get a pre-signed POST form for it",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("UploadRequest")}},
                },
                "responses": {
                    "201": _json(_ref("UploadTicket"), "Pending file and its upload form"),
                    **_errors(400, 401, 403, 413, 429, 503),
                },
            }
        },
        f"{API_PREFIX}/uploads/{{file_id}}/complete": {
            "post": {
                "operationId": "complete_upload",
                "summary": "Check the uploaded object against the declaration and make the file available",
                "parameters": [FILE_ID],
                "responses": {
                    "200": _json(
                        {"type": "object", "required": ["file"], "properties": {"file": _ref("File")}},
                        "Available",
                    ),
                    **_errors(400, 401, 403, 404, 409, 500, 503),
                },
            }
        },
        f"{API_PREFIX}/uploads/{{file_id}}": {
            "delete": {
                "operationId": "delete_file",
                "summary": "Delete a file and its object (owner only)",
                "parameters": [FILE_ID],
                "responses": {"204": {"description": "Deleted"}, **_errors(400, 401, 403, 404, 500, 503)},
            }
        },
        f"{API_PREFIX}/projects/{{project_id}}/files": {
            "get": {
                "operationId": "list_project_files",
                "summary": "Available files of a project the caller belongs to, newest first",
                "parameters": [
                    PROJECT_ID,
                    _param(
                        "limit", "query", {"type": "integer", "minimum": 1, "maximum": MAX_LIST_LIMIT}, False
                    ),
                    _param("cursor", "query", {"type": "string", "maxLength": 200}, False),
                ],
                "responses": {"200": _json(_ref("FileList"), "Files"), **_errors(400, 401, 403, 503)},
            }
        },
        f"{API_PREFIX}/files/{{file_id}}": {
            "get": {
                "operationId": "get_file",
                "summary": "File metadata (same permission as download)",
                "parameters": [FILE_ID],
                "responses": {"200": _json(_ref("File"), "File"), **_errors(400, 401, 403, 404, 503)},
            }
        },
        f"{API_PREFIX}/files/{{file_id}}/download": {
            "get": {"operationId": "download_file", **download_op},
            "post": {"operationId": "download_file_post", **download_op},
        },
        f"{API_PREFIX}/files/{{file_id}}/shares": {
            "get": {
                "operationId": "list_shares",
                "summary": "Share grants of a file (owner only)",
                "parameters": [FILE_ID],
                "responses": {"200": _json(_ref("ShareList"), "Shares"), **_errors(400, 401, 403, 404, 503)},
            }
        },
        f"{API_PREFIX}/files/{{file_id}}/shares/{{user_id}}": {
            "put": {
                "operationId": "share_file",
                "summary": "Grant a user download access until a time (owner only); replaces an earlier grant",
                "parameters": [FILE_ID, USER_ID],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("ShareRequest")}},
                },
                "responses": {
                    "200": _json(_ref("Share"), "Granted"),
                    **_errors(400, 401, 403, 404, 413, 503),
                },
            },
            "delete": {
                "operationId": "revoke_share",
                "summary": "Revoke a user's grant (owner only)",
                "parameters": [FILE_ID, USER_ID],
                "responses": {"204": {"description": "Revoked"}, **_errors(400, 401, 403, 404, 503)},
            },
        },
        LIVENESS_PATH: {
            "get": {
                "operationId": "liveness",
                "summary": "The process answers (the container health check; no authentication)",
                "security": [],
                "responses": {"200": _json(_ref("Health"), "Alive")},
            }
        },
        READINESS_PATH: {
            "get": {
                "operationId": "readiness",
                "summary": "Every dependency a request needs answers: PostgreSQL, and S3 for the upload "
                "role (the load balancer's health check; no authentication)",
                "security": [],
                "responses": {
                    "200": _json(_ref("Health"), "Ready"),
                    "503": _json(_ref("Health"), "A dependency is down (named in checks)"),
                },
            }
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Motion files service",
            "version": "1.0.0",
            "description": "File metadata, permissions and pre-signed S3 URLs; file bytes go directly to S3.",
        },
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }
