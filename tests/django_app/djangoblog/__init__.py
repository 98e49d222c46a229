"""The Django project uwgate's integration tests (and `make run`) put behind uwgate + uWSGI.

The package is named like the appliance's real project (rootfs/etc/uwgate.ini says
`module = djangoblog.wsgi:application`), so the demo config works unchanged against it.
"""
