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
    path("e/<slug:slug>/stop/", views.stop, name="stop"),
    path("e/<slug:slug>/preview/", views.preview_landing, name="preview"),
    path("e/<slug:slug>/preview/start/", views.preview_start, name="preview_start"),
    path("e/<slug:slug>/preview/decline/", views.preview_decline, name="preview_decline"),
    path("e/<slug:slug>/preview/trial/", views.preview_trial, name="preview_trial"),
    path("e/<slug:slug>/preview/answer/", views.preview_answer, name="preview_answer"),
    path("e/<slug:slug>/preview/done/", views.preview_done, name="preview_done"),
    path("e/<slug:slug>/preview/stop/", views.preview_stop, name="preview_stop"),
    path("e/<slug:slug>/preview/img/<str:name>", views.preview_image, name="preview_image"),
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
