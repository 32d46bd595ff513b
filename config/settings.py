"""Settings from environment variables, with defaults that run everything on one laptop.

Defaults: SQLite, local media under var/, Celery over kombu's filesystem transport (no server).
DATABASE_URL, CELERY_BROKER_URL and ASSAY_S3_BUCKET switch to PostgreSQL, RabbitMQ/Redis and S3.
"""
import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("ASSAY_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


DEBUG = env_bool("DJANGO_DEBUG", True)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "assay-insecure-development-key-change-me")
if not DEBUG and SECRET_KEY.startswith("assay-insecure"):
    raise RuntimeError("Set DJANGO_SECRET_KEY when DJANGO_DEBUG is off.")
ALLOWED_HOSTS = [h for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "guardian",
    "governance",
    "catalog",
    "reconstruction",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "governance.middleware.RequestContextMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "60")),
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
ANONYMOUS_USER_NAME = None  # guardian: no anonymous user row; anonymous callers see nothing
GUARDIAN_RAISE_403 = False

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = Path(os.environ.get("ASSAY_STATIC_ROOT", BASE_DIR / "staticfiles"))
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(os.environ.get("ASSAY_MEDIA_ROOT", VAR_DIR / "media"))

# Content-addressed files go through Django's storage API: local disk unless a bucket is named.
ASSAY_S3_BUCKET = os.environ.get("ASSAY_S3_BUCKET", "")
if ASSAY_S3_BUCKET:
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": ASSAY_S3_BUCKET,
            "endpoint_url": os.environ.get("ASSAY_S3_ENDPOINT_URL") or None,
            "region_name": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
            "access_key": os.environ.get("AWS_ACCESS_KEY_ID"),
            "secret_key": os.environ.get("AWS_SECRET_ACCESS_KEY"),
            "file_overwrite": False,
            "querystring_expire": int(os.environ.get("ASSAY_S3_URL_EXPIRY", "300")),
            "default_acl": None,
            "signature_version": "s3v4",
        },
    }
else:
    _default_storage = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
STORAGES = {
    "default": _default_storage,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Uploads: streamed to a temporary file past 2.5 MB, never held whole in memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
DATA_UPLOAD_MAX_MEMORY_SIZE = 10_485_760
FILE_UPLOAD_TEMP_DIR = os.environ.get("ASSAY_UPLOAD_TMP") or None
ASSAY_MAX_UPLOAD_BYTES = int(os.environ.get("ASSAY_MAX_UPLOAD_BYTES", str(512 * 1024 * 1024)))
ASSAY_MAX_IMAGE_PIXELS = int(os.environ.get("ASSAY_MAX_IMAGE_PIXELS", str(100_000_000)))

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "catalog.api.pagination.CatalogCursorPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "config.problems.problem_details_handler",
    "DEFAULT_PARSER_CLASSES": [
        "rest_framework.parsers.JSONParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Assay catalog API",
    "DESCRIPTION": "Governed, production-ready 3D assets: catalog, reconstruction jobs and provenance.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Several models have a "state" or "role"; name each choice set once so clients get stable enum names.
    "ENUM_NAME_OVERRIDES": {
        "AssetStateEnum": "catalog.models.Asset.State",
        "VersionStateEnum": "catalog.models.AssetVersion.State",
        "RepresentationRoleEnum": "catalog.models.Representation.Role",
        "AccessRoleEnum": "catalog.api.serializers.ROLE_CHOICES",
    },
}

# Celery: the default broker is a folder on disk, shared by every process on this machine.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    # Redis redelivers unacknowledged tasks after this many seconds: longer than any job may run.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", "43200"))}
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
# Reconstruction jobs: a worker beats every HEARTBEAT_S; a running job silent for STALL_AFTER_S is re-queued
# (or failed once it has used MAX_ATTEMPTS). RabbitMQ's consumer_timeout must exceed the longest job.
ASSAY_JOB_HEARTBEAT_S = env_float("ASSAY_JOB_HEARTBEAT_S", 30.0)
ASSAY_JOB_STALL_AFTER_S = env_float("ASSAY_JOB_STALL_AFTER_S", 300.0)
ASSAY_JOB_MAX_ATTEMPTS = int(os.environ.get("ASSAY_JOB_MAX_ATTEMPTS", "3"))
ASSAY_JOB_TIME_LIMIT_S = int(os.environ.get("ASSAY_JOB_TIME_LIMIT_S", str(6 * 3600)))  # a hung backend fails here
ASSAY_JOB_WORKDIR = os.environ.get("ASSAY_JOB_WORKDIR") or None
# `migrate` copies the engine's model registry (reconstruction/engine/weights/registry.json) into LearnedModel.
ASSAY_SYNC_MODELS_ON_MIGRATE = env_bool("ASSAY_SYNC_MODELS_ON_MIGRATE", True)
CELERY_BEAT_SCHEDULE = {
    "sign-audit-tree-head": {"task": "governance.sign_tree_head", "schedule": 300.0},
    "detect-stalled-jobs": {"task": "reconstruction.detect_stalled_jobs", "schedule": 60.0},
    "expire-rights": {"task": "governance.expire_rights", "schedule": 3600.0},
}

# Cost rates (per hour of compute, per GB-month of storage, per hour of human time).
ASSAY_RATES = {
    "gpu_hour": env_float("ASSAY_RATE_GPU_HOUR", 2.50),
    "cpu_hour": env_float("ASSAY_RATE_CPU_HOUR", 0.05),
    "storage_gb_month": env_float("ASSAY_RATE_STORAGE_GB_MONTH", 0.023),
    "retention_months": env_float("ASSAY_RETENTION_MONTHS", 36),
    "human_hour": env_float("ASSAY_RATE_HUMAN_HOUR", 60.0),
}

# Signing keys for tree heads and attestations live outside the database.
ASSAY_KEY_DIR = Path(os.environ.get("ASSAY_KEY_DIR", VAR_DIR / "keys"))
# Key-encryption key wrapping the signing keys at rest: 32 bytes, base64 (unset: generated under ASSAY_KEY_DIR, dev only).
ASSAY_KEY_ENCRYPTION_KEY = os.environ.get("ASSAY_KEY_ENCRYPTION_KEY", "")
ASSAY_KEY_ENCRYPTOR = os.environ.get("ASSAY_KEY_ENCRYPTOR", "governance.keys.LocalKeyEncryptor")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("ASSAY_LOG_LEVEL", "INFO")},
}
