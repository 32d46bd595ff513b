"""Routes of the job API, mounted at /api/v1/ by config/urls.py."""
from django.urls import path
from rest_framework.routers import SimpleRouter

from reconstruction.api import views

app_name = "reconstruction-api"

router = SimpleRouter()
router.register("jobs", views.JobViewSet, basename="job")
router.register("models", views.LearnedModelViewSet, basename="learned-model")

urlpatterns = [
    path("backends/", views.BackendListView.as_view(), name="backend-list"),
    *router.urls,
]
