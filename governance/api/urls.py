"""Routes of the governance API, mounted at /api/v1/ by config/urls.py."""
from django.urls import path
from rest_framework.routers import DefaultRouter

from governance.api import views

app_name = "governance-api"

router = DefaultRouter()
router.trailing_slash = "/?"  # `/proof` and `/proof/` both resolve
router.include_root_view = False
router.register("audit/events", views.AuditEventViewSet, basename="audit-event")
router.register("audit/tree-heads", views.TreeHeadViewSet, basename="tree-head")

urlpatterns = [
    path("audit/consistency", views.ConsistencyProofView.as_view(), name="audit-consistency"),
    path("audit/export", views.AuditExportView.as_view(), name="audit-export"),
    path("keys", views.SigningKeyListView.as_view(), name="keys"),
    path("versions/<int:pk>/attestations/", views.VersionAttestationsView.as_view(), name="version-attestations"),
    path("versions/<int:pk>/lineage", views.VersionLineageView.as_view(), name="version-lineage"),
    *router.urls,
]
