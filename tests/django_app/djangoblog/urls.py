"""URLs of the uwgate test project; each view says what it is for."""
from django.contrib import admin
from django.urls import path, re_path

from . import views

urlpatterns = [
    path("", views.home),
    # Any path under /environ, so tests can send tricky paths (encoded, unicode, dot segments).
    re_path(r"^environ(?:/.*)?$", views.environ),
    path("upload", views.upload),
    path("stream", views.stream),
    path("slow", views.slow),
    path("crash", views.crash),
    path("pid", views.pid),
    path("protected", views.protected),
    path("big-headers", views.big_headers),
    path("respond", views.respond),
    path("admin/", admin.site.urls),
]
