"""Routes of the catalog API, mounted at /api/v1/ by config/urls.py."""
from django.urls import path
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.routers import DefaultRouter

from catalog.api import views

app_name = "catalog-api"

router = DefaultRouter()
router.register("collections", views.CollectionViewSet, basename="collection")
router.register("assets", views.AssetViewSet, basename="asset")
router.register("captures", views.CaptureViewSet, basename="capture")
router.register("versions", views.VersionViewSet, basename="version")
router.register("variants", views.VariantViewSet, basename="variant")
router.register("lods", views.LODViewSet, basename="lod")
router.register("representations", views.RepresentationViewSet, basename="representation")

urlpatterns = [
    path("auth/token/", ObtainAuthToken.as_view(), name="token"),
    *router.urls,
]
