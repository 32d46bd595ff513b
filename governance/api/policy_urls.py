"""Routes of rights and review in the governance API, mounted at /api/v1/ by config/urls.py."""
from django.urls import path

from governance.api import policy_views as views

app_name = "governance-policy-api"

urlpatterns = [
    path("assets/<int:pk>/rights/", views.AssetRightsView.as_view(), name="asset-rights"),
    path("versions/<int:pk>/rights/", views.VersionRightsView.as_view(), name="version-rights"),
    path("reviews/", views.ReviewListView.as_view(), name="review-list"),
    path("reviews/<int:pk>/claim/", views.ReviewClaimView.as_view(), name="review-claim"),
    path("reviews/<int:pk>/decide/", views.ReviewDecideView.as_view(), name="review-decide"),
]
