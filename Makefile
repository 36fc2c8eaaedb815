# The two commands of the README:
#   make demo   set up and serve the demo on 127.0.0.1:8000 (SQLite, bundled photos)
#   make test   the whole test suite, on SQLite and on PostgreSQL (what .ci/run calls)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
VAR := var
PG_URL ?= postgres://postgres@127.0.0.1:5432/test
DEMO_ENV := VTT_DEMO=1
CKPT := $(VAR)/checkpoints
TRAIN := $(PY) -m colorizers.train --data demo
DEMO_MODELS := mean_chroma zhang2016 lal2017 liang2016 pixcolor royer2017
DEMO_CHECKPOINTS := $(foreach m,$(DEMO_MODELS),$(CKPT)/$(m)-demo.pt)

.PHONY: demo serve test test-sqlite test-postgres

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# The demo's models: small configurations trained on the 20 demo training photos (never
# on the 24 the demo rates), about four minutes in all on 2 CPU cores. zhang2016 and
# lal2017 train without class rebalancing: a colour prior from 20 photos turns the
# rebalanced models orange. Each model file's docstring explains its configuration.
$(CKPT)/mean_chroma-demo.pt: $(VENV)/.installed data/demo/photos.csv
	$(TRAIN) --model mean_chroma --out $@
$(CKPT)/zhang2016-demo.pt: $(VENV)/.installed data/demo/photos.csv
	$(TRAIN) --model zhang2016 --steps 600 --batch-size 16 --crop 64 --resize 256 --lr 1e-3 \
		--config width_mult=0.125 --config rebalance_lambda=1.0 --out $@
$(CKPT)/lal2017-demo.pt: $(VENV)/.installed data/demo/photos.csv
	$(TRAIN) --model lal2017 --steps 600 --batch-size 16 --crop 64 --resize 256 --lr 1e-3 \
		--config width_mult=0.125 --config critic_width_mult=0.25 --config rebalance_lambda=1.0 --out $@
$(CKPT)/liang2016-demo.pt: $(VENV)/.installed data/demo/photos.csv
	$(TRAIN) --model liang2016 --steps 150 --batch-size 16 --out $@
$(CKPT)/pixcolor-demo.pt: $(VENV)/.installed data/demo/photos.csv
	$(TRAIN) --model pixcolor --steps 400 --batch-size 8 --crop 128 --lr 1e-3 --config image_size=128 \
		--config 'trunk_layers=[1,1,1]' --config trunk_width=16 --config cond_channels=32 \
		--config pixelcnn_channels=32 --config pixelcnn_blocks=4 --config hidden=128 --config refine_width=16 --out $@
$(CKPT)/royer2017-demo.pt: $(VENV)/.installed data/demo/photos.csv
	$(TRAIN) --model royer2017 --steps 300 --batch-size 16 --crop 64 --lr 1e-3 --config working_size=64 \
		--config 'embed_widths=[16,32,64,64]' --config embed_blocks=1 --config embed_dilated_blocks=1 \
		--config embed_channels=48 --config channels=32 --config n_blocks=2 --config n_mix=5 --config dropout=0.1 --out $@

$(VAR)/demo-staff-password: $(VENV)/.installed
	$(DEMO_ENV) $(PY) manage.py migrate --noinput --verbosity 0
	$(PY) -c "import secrets; print(secrets.token_urlsafe(12))" > $@.tmp
	$(DEMO_ENV) DJANGO_SUPERUSER_PASSWORD="$$(cat $@.tmp)" $(PY) manage.py createsuperuser --noinput --username demo --email demo@localhost
	mv $@.tmp $@

demo: $(VENV)/.installed $(DEMO_CHECKPOINTS) $(VAR)/demo-staff-password
	$(DEMO_ENV) $(PY) manage.py migrate --noinput
	$(DEMO_ENV) $(PY) manage.py collectstatic --noinput --verbosity 0
	$(DEMO_ENV) $(PY) manage.py generate_pairs --experiment demo --title "Demo: which image has the true colors?" \
		--split demo --trials-per-rater 12 $(foreach m,$(DEMO_MODELS),--checkpoint $(m)=$(CKPT)/$(m)-demo.pt) --open
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

# The tests that touch a database, again on PostgreSQL, the production database
# (.ci/run makes sure it answers); the others do not depend on the database.
test-postgres: $(VENV)/.installed
	DATABASE_URL=$(PG_URL) VTT_TESTS_DATABASE_ONLY=1 $(PY) -m pytest
