# The two commands of the README:
#   make demo   set up and serve the demo on 127.0.0.1:8000 (SQLite, bundled photos)
#   make test   the whole test suite, on SQLite and on PostgreSQL (what .ci/run calls)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
VAR := var
PG_URL ?= postgres://postgres@127.0.0.1:5432/test
DEMO_ENV := VTT_DEMO=1
DEMO_CHECKPOINT := $(VAR)/checkpoints/mean_chroma-demo.pt

.PHONY: demo serve test test-sqlite test-postgres

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# The demo's only trained model: the mean chroma of the demo's training photos.
$(DEMO_CHECKPOINT): $(VENV)/.installed data/demo/photos.csv
	$(PY) -m colorizers.train --model mean_chroma --data demo --out $@

$(VAR)/demo-staff-password: $(VENV)/.installed
	$(DEMO_ENV) $(PY) manage.py migrate --noinput --verbosity 0
	$(PY) -c "import secrets; print(secrets.token_urlsafe(12))" > $@.tmp
	$(DEMO_ENV) DJANGO_SUPERUSER_PASSWORD="$$(cat $@.tmp)" $(PY) manage.py createsuperuser --noinput --username demo --email demo@localhost
	mv $@.tmp $@

demo: $(VENV)/.installed $(DEMO_CHECKPOINT) $(VAR)/demo-staff-password
	$(DEMO_ENV) $(PY) manage.py migrate --noinput
	$(DEMO_ENV) $(PY) manage.py collectstatic --noinput --verbosity 0
	$(DEMO_ENV) $(PY) manage.py generate_pairs --experiment demo --title "Demo: which image has the true colors?" \
		--split demo --trials-per-rater 12 --checkpoint mean_chroma=$(DEMO_CHECKPOINT) --open
	@$(MAKE) --no-print-directory serve

serve: $(VENV)/.installed
	@echo
	@echo "Rater URL:             http://127.0.0.1:8000/e/demo/"
	@echo "Experimenter dashboard: http://127.0.0.1:8000/staff/  (user demo, password in $(VAR)/demo-staff-password)"
	@echo "Report:                $(DEMO_ENV) $(PY) manage.py vtt_report --experiment demo"
	@echo
	$(DEMO_ENV) exec $(VENV)/bin/gunicorn vtt.wsgi --bind 127.0.0.1:8000 --workers 3 --access-logfile -

test: test-sqlite test-postgres

test-sqlite: $(VENV)/.installed
	$(PY) -m pytest

# The same suite on PostgreSQL, the production database (.ci/run makes sure it answers).
test-postgres: $(VENV)/.installed
	DATABASE_URL=$(PG_URL) $(PY) -m pytest
