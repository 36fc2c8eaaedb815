from django.contrib import admin

from .models import Colorization, Experiment, ExperimentImage, Method, Rater, SourceImage, Trial


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin):
    list_display = ["slug", "title", "state", "raters_per_pair", "trials_per_rater", "split", "created"]
    list_filter = ["state"]
    search_fields = ["slug", "title"]
    prepopulated_fields = {"slug": ["title"]}
    readonly_fields = ["split", "image_size", "preprocessing", "created"]
    fieldsets = [
        (None, {"fields": ["slug", "title", "state", "instructions"]}),
        ("Design", {"fields": ["raters_per_pair", "trials_per_rater", "practice_trials", "catch_trial_rate", "exposure_ms"]}),
        ("Completion", {"fields": ["completion_code", "completion_url"]}),
        ("Images", {"fields": ["split", "image_size", "preprocessing", "created"]}),
    ]


@admin.register(Method)
class MethodAdmin(admin.ModelAdmin):
    list_display = ["name", "experiment", "kind", "colorizer", "checkpoint_sha256", "is_control"]
    list_filter = ["kind", "is_control", "experiment"]
    search_fields = ["name", "colorizer", "checkpoint_sha256"]


@admin.register(SourceImage)
class SourceImageAdmin(admin.ModelAdmin):
    list_display = ["path", "split", "class_index", "width", "height", "sha256"]
    list_filter = ["split"]
    search_fields = ["path", "sha256"]


@admin.register(ExperimentImage)
class ExperimentImageAdmin(admin.ModelAdmin):
    list_display = ["source", "experiment", "created"]
    list_filter = ["experiment"]
    raw_id_fields = ["source"]


@admin.register(Colorization)
class ColorizationAdmin(admin.ModelAdmin):
    list_display = ["image", "method", "seed", "created"]
    list_filter = ["method__experiment", "method__name"]
    raw_id_fields = ["image", "method"]


@admin.register(Rater)
class RaterAdmin(admin.ModelAdmin):
    list_display = ["__str__", "experiment", "external_id", "started", "finished", "flagged"]
    list_filter = ["experiment", "flagged"]
    search_fields = ["external_id", "token"]


@admin.register(Trial)
class TrialAdmin(admin.ModelAdmin):
    list_display = ["rater", "position", "kind", "colorization", "real_side", "choice", "response_ms", "answered"]
    list_filter = ["kind", "rater__experiment"]
    raw_id_fields = ["rater", "colorization"]
