"""Settings of the uwgate test project: production-like (DEBUG off), no outside services.

Environment:
- UWGATE_TEST_DB: the sqlite database file (the test harness gives each test its own copy of a
  migrated database with the superuser admin / admin-pass-123). Default: out/run/django.sqlite3
  of the checkout when out/run exists (`make run`), else a file in the temp dir.
"""
import os
import tempfile
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

# Fixed on purpose: this project only ever runs in tests and the local demo.
SECRET_KEY = "uwgate-test-only-3f9c1e7a5b2d4c6e8f0a1b3c5d7e9f11-k2Zq8Vw4Xr7Tn5Lp"
DEBUG = False
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "djangoblog.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "djangoblog.wsgi.application"

_RUN_DIR = BASE_DIR.parent.parent / "out" / "run"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("UWGATE_TEST_DB")
        or (
            str(_RUN_DIR / "django.sqlite3")
            if _RUN_DIR.is_dir()
            else os.path.join(tempfile.gettempdir(), "uwgate-demo-db.sqlite3")
        ),
    }
}

AUTH_PASSWORD_VALIDATORS = []

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# uwgate serves these (the [location:/static/] alias), exactly as nginx does in front of Django.
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "collectedstatic"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Uploads in the tests go up to 50 MiB; /upload streams request.read(), which these limits do not
# cover, but the admin's form POSTs do.
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

# Errors go to uWSGI's log (stderr), where a failing test shows them.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"django": {"handlers": ["stderr"], "level": "WARNING"}},
}
