"""The files service's own metrics (CloudWatch namespace, dimension, names): plain data, read by the
service (`motion_common.metrics`, published every minute as EMF in its logs) and by the program for
the dashboard. One document per interval and task, dimension `Service` = `files-<role>`.

| metric | published when |
|---|---|
| `UploadFormsSigned` | an upload form (pre-signed POST) is handed out |
| `DownloadUrlsSigned` | a download URL (pre-signed GET) is handed out |
| `UploadsCompleted` | an upload is completed (the object checked and pinned) |
| `Denials` | a request is refused for its token (401) or its permissions (403) |
| `QuotaRefusals` | an upload is refused by a quota (429 pending uploads, 413 project storage) |
"""

from __future__ import annotations

from typing import Final

NAMESPACE: Final = "Motion/Files"
DIMENSION: Final = "Service"
UPLOAD_FORMS_SIGNED: Final = "UploadFormsSigned"
DOWNLOAD_URLS_SIGNED: Final = "DownloadUrlsSigned"
UPLOADS_COMPLETED: Final = "UploadsCompleted"
DENIALS: Final = "Denials"
QUOTA_REFUSALS: Final = "QuotaRefusals"
ALL: Final = (UPLOAD_FORMS_SIGNED, DOWNLOAD_URLS_SIGNED, UPLOADS_COMPLETED, DENIALS, QUOTA_REFUSALS)


def dimension_value(role: str) -> str:
    return f"files-{role}"
