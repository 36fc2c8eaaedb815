# The two commands of the README:
#   make demo   set up and serve the demo on 127.0.0.1:8000 (SQLite, bundled photos)
#   make test   the whole test suite, on SQLite and on PostgreSQL (what .ci/run calls)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
VAR := var
PG_URL ?= postgres://postgres@127.0.0.1:5432/test
DEMO_ENV := VTT_DEMO=1
DEMO_MODELS := mean_chroma zhang2016 lal2017 liang2016 pixcolor royer2017
DEMO_MODELS_DIR := data/demo/models
DEMO_CHECKPOINTS := $(foreach m,$(DEMO_MODELS),$(DEMO_MODELS_DIR)/$(m).pt)
# The tests that touch a database, again on PostgreSQL, the production database
# (.ci/run makes sure it answers); the others do not depend on the database.
PYTEST_POSTGRES := DATABASE_URL=$(PG_URL) VTT_TESTS_DATABASE_ONLY=1 $(PY) -m pytest
# bash, for pipefail in `make test`
SHELL := /bin/bash

.PHONY: demo serve demo-models demo-figure test test-sqlite test-postgres

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# The demo's models ship in data/demo/models (weights only, each with its SHA-256 and the
# exact command that made it in models.json): `make demo` trains nothing. `make demo-models`
# retrains all six on the 20 demo training photos (never on the 24 the demo rates) and
# rewrites those files; data/demo/train_models.py has the recipes.
demo-models: $(VENV)/.installed data/demo/photos.csv
	$(PY) data/demo/train_models.py

$(VAR)/demo-staff-password: $(VENV)/.installed
	$(DEMO_ENV) $(PY) manage.py migrate --noinput --verbosity 0
	$(PY) -c "import secrets; print(secrets.token_urlsafe(12))" > $@.tmp
	$(DEMO_ENV) DJANGO_SUPERUSER_PASSWORD="$$(cat $@.tmp)" $(PY) manage.py createsuperuser --noinput --username demo --email demo@localhost
	mv $@.tmp $@

# The images (generate_pairs), then the study's settings and state (manage.py experiment); a
# second `make demo` finds the demo experiment open and leaves it so (--if-needed).
demo: $(VENV)/.installed $(DEMO_CHECKPOINTS) $(VAR)/demo-staff-password
	$(DEMO_ENV) $(PY) manage.py migrate --noinput
	$(DEMO_ENV) $(PY) manage.py collectstatic --noinput --verbosity 0
	$(DEMO_ENV) $(PY) manage.py generate_pairs --experiment demo --split demo \
		$(foreach m,$(DEMO_MODELS),--checkpoint $(m)=$(DEMO_MODELS_DIR)/$(m).pt)
	$(DEMO_ENV) $(PY) manage.py experiment configure demo --title "Demo: which image has the true colors?" \
		--trials-per-rater 12
	$(DEMO_ENV) $(PY) manage.py experiment open demo --if-needed
	@$(MAKE) --no-print-directory serve

# gunicorn loads the app before it forks its workers (--preload; vtt/wsgi.py warms it up), so
# no rater waits for a cold worker; its control socket and pid file stay in var/. Threaded workers
# (gthread): a sync worker streaming a large export (a minute for 1M trials) sends its master no
# heartbeat and is killed after gunicorn's 30 s timeout mid-download (tests/test_export_memory.py).
serve: $(VENV)/.installed
	@echo
	@echo "Rater URL:              http://127.0.0.1:8000/e/demo/"
	@echo "Experimenter dashboard: http://127.0.0.1:8000/staff/  (user demo, password in $(VAR)/demo-staff-password)"
	@echo "Report:                 $(DEMO_ENV) $(PY) manage.py vtt_report --experiment demo"
	@echo
	$(DEMO_ENV) exec $(VENV)/bin/gunicorn vtt.wsgi --preload --bind 127.0.0.1:8000 --workers 3 \
		--worker-class gthread --threads 4 --access-logfile - \
		--control-socket $(VAR)/gunicorn.ctl --pid $(VAR)/gunicorn.pid

# The picture of demo pairs in the README, from the stored pairs of the demo experiment.
demo-figure: $(VENV)/.installed
	$(DEMO_ENV) $(PY) manage.py pairs_sheet --experiment demo --images 5 --size 150 --seed 3 \
		--methods mean_chroma,zhang2016,lal2017,liang2016,pixcolor,royer2017 --out data/demo/pairs.jpg

# Both halves run even when the first fails; make test fails if either did, after both summaries.
test: $(VENV)/.installed
	@mkdir -p $(VAR); set -o pipefail; \
	$(PY) -m pytest 2>&1 | tee $(VAR)/test-sqlite.log; sqlite=$$?; \
	$(PYTEST_POSTGRES) 2>&1 | tee $(VAR)/test-postgres.log; postgres=$$?; \
	echo; echo "SQLite, the whole suite:          $$(tail -n 1 $(VAR)/test-sqlite.log)"; \
	echo "PostgreSQL, the database tests:   $$(tail -n 1 $(VAR)/test-postgres.log)"; \
	[ $$sqlite -eq 0 ] && [ $$postgres -eq 0 ]

test-sqlite: $(VENV)/.installed
	$(PY) -m pytest

test-postgres: $(VENV)/.installed
	$(PYTEST_POSTGRES)
