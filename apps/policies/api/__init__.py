"""Management API of the data-subject request register (issue 22).

/api/v1/tenants/{slug}/data-subject-requests/: serializers, views, urls (included from hub/urls.py).
"""
