from django.contrib import admin, messages

from . import services
from .models import Colorization, Experiment, ExperimentImage, Method, Rater, SourceImage, Slot, Trial


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin):
    list_display = ["slug", "title", "state", "timing", "raters_per_pair", "trials_per_rater", "split", "created"]
    list_filter = ["state", "timing"]
    search_fields = ["slug", "title"]
    prepopulated_fields = {"slug": ["title"]}
    readonly_fields = ["state", "split", "image_size", "preprocessing", "created"]  # state: by the actions
    fieldsets = [
        (None, {"fields": ["slug", "title", "state", "instructions"]}),
        ("Pilot", {"fields": ["pilot_raters"]}),
        ("Design", {"fields": ["design", "raters_per_pair", "trials_per_rater", "practice_trials", "catch_trial_rate",
                               "catch_fail_threshold", "lease_seconds"]}),
        ("Timing", {"fields": ["timing", "exposure_ms"]}),
        ("Display and devices", {"fields": ["display_size", "allow_mobile", "require_fullscreen"]}),
        ("Panel and outcomes (each outcome's code, or for a custom panel its URL)", {"fields": [
            "panel", "participant_param", "completion_url", "completion_code", "flagged_code", "catch_fail_action",
            "screened_out_code", "no_consent_code", "no_pairs_code", "returned_code", "timed_out_code",
            "session_minutes"]}),
        ("Pay sheet (bonus rule)", {"fields": ["bonus_amount", "bonus_min_catch_accuracy"]}),
        ("Stopping rule (pre-registered)", {"fields": ["precision_target", "look_every", "max_looks"]}),
        ("Images", {"fields": ["split", "image_size", "preprocessing", "created"]}),
    ]
    actions = ["open_experiments", "close_experiments"]

    @admin.action(description="Open to raters (creates each pair's K places)")
    def open_experiments(self, request, queryset):
        for experiment in queryset:
            try:
                created = services.experiment_open(experiment=experiment)
            except services.TrialRejected as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                self.message_user(request, f"{experiment.slug} is open ({created} places created)")

    @admin.action(description="Close to raters")
    def close_experiments(self, request, queryset):
        for experiment in queryset:
            try:
                services.experiment_close(experiment=experiment)
            except services.TrialRejected as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                self.message_user(request, f"{experiment.slug} is closed")


@admin.register(Method)
class MethodAdmin(admin.ModelAdmin):
    list_display = ["name", "experiment", "kind", "colorizer", "checkpoint_sha256", "role"]
    list_filter = ["kind", "role", "experiment"]
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
    list_display = ["__str__", "experiment", "external_id", "method", "started", "finished", "outcome", "declined",
                    "flagged", "pilot"]
    list_filter = ["experiment", "outcome", "flagged", "pilot", ("declined", admin.EmptyFieldListFilter)]
    search_fields = ["external_id", "token"]


@admin.register(Trial)
class TrialAdmin(admin.ModelAdmin):
    list_display = ["rater", "position", "kind", "colorization", "real_side", "choice", "counted", "response_ms",
                    "exposure_ms", "focus_lost", "answered"]
    list_filter = ["kind", "rater__experiment", "focus_lost"]
    raw_id_fields = ["rater", "colorization"]


@admin.register(Slot)
class SlotAdmin(admin.ModelAdmin):
    list_display = ["colorization", "index", "filled", "trial", "lease_expires"]
    list_filter = ["experiment", "filled"]
    raw_id_fields = ["colorization", "trial"]
