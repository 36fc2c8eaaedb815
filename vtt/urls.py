from django.contrib import admin
from django.urls import include, path

from . import views

rater_patterns = [
    path("", views.index, name="index"),
    path("e/<slug:slug>/", views.landing, name="landing"),
    path("e/<slug:slug>/start/", views.start, name="start"),
    path("e/<slug:slug>/decline/", views.decline, name="decline"),
    path("e/<slug:slug>/trial/", views.trial, name="trial"),
    path("e/<slug:slug>/answer/", views.answer, name="answer"),
    path("e/<slug:slug>/done/", views.done, name="done"),
    path("img/<str:name>", views.image, name="image"),
    path("healthz", views.healthz, name="healthz"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("staff/", views.dashboard, name="dashboard"),
    path("staff/e/<slug:slug>/", views.experiment_detail, name="experiment"),
    path("staff/e/<slug:slug>/state/", views.experiment_state, name="experiment_state"),
    path("staff/e/<slug:slug>/trials.<str:fmt>", views.export, name="export"),
    path("staff/e/<slug:slug>/pay-sheet.csv", views.pay_sheet, name="pay_sheet"),
    path("staff/e/<slug:slug>/prolific-<str:kind>.txt", views.prolific_file, name="prolific_file"),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include((rater_patterns, "vtt"))),
]
