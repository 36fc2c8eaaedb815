"""Print the nginx configuration of this deployment: static files and pair images from nginx, the rest from gunicorn."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from vtt.models import pairs_dir

DEFAULT_ACCEL_PREFIX = "/_pairs/"

# The server block; {name} fields come from the settings and the options. Directives at the server level
# (proxy_set_header above all) are inherited by every location that sets none of its own.
SERVER = """\
# vtt behind nginx, written by `python manage.py nginx_config` for this deployment's paths.
# The app's environment sets VTT_IMAGE_ACCEL_REDIRECT={accel}: the app decides which rater may see
# which pair image and answers with X-Accel-Redirect; nginx sends the file from {accel}.
# nginx sets X-Forwarded-Proto to its own scheme, which Django trusts (SECURE_PROXY_SSL_HEADER):
# terminate HTTPS here (listen 443 ssl, certificates), and bind gunicorn to the loopback address.

upstream vtt_app {{
{servers}
    keepalive 16;
    keepalive_timeout 1s;  # below gunicorn's --keep-alive (2 s): never a POST on a connection it closed (a 502)
}}

server {{
    listen {listen};
    server_name {server_name};
    server_tokens off;

    client_max_body_size 1m;  # answers and staff forms are small; nothing is uploaded
    client_header_timeout 15s;
    client_body_timeout 15s;

    proxy_http_version 1.1;
    proxy_set_header Connection "";  # keep the upstream connections alive
    proxy_set_header Host $http_host;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_connect_timeout 5s;
    proxy_send_timeout 60s;
    proxy_read_timeout 60s;

    # collectstatic's files (ManifestStaticFilesStorage): the names the pages use carry a hash of
    # the content and are cached for good; the others, briefly. Its .gz copies are sent as they are.
    location {static_url} {{
        alias {static_root};
        gzip_static on;
        gzip_vary on;
        access_log off;
        add_header Cache-Control "public, max-age=60";
        add_header X-Content-Type-Options nosniff;
        location ~ "\\.[0-9a-f]{{12}}\\.[A-Za-z0-9]+$" {{
            add_header Cache-Control "public, max-age=315360000, immutable";
            add_header X-Content-Type-Options nosniff;
        }}
    }}

    # Pair images, reachable only through the app's X-Accel-Redirect (a direct request is a 404).
    # Every image gets the same headers, its length aside: nothing made of the file's mtime, which
    # would tell the real image (rendered first) from the colorized ones. Content-Type and
    # Cache-Control are the app's, which nginx keeps on the redirect (a Cache-Control here would be a second one).
    location {accel} {{
        internal;
        alias {pairs_dir};
        etag off;                     # the ETag is made of the mtime and the size
        if_modified_since off;        # else an If-Modified-Since equal to the mtime gets a 304
        max_ranges 0;                 # no Accept-Ranges, no partial responses
        add_header Last-Modified "";  # the static module's Last-Modified (the mtime), removed
        add_header X-Content-Type-Options nosniff;
    }}

    # Exports stream for a minute or more (1M trials): straight to the client, no temporary file,
    # and a longer wait for the first bytes.
    location /staff/ {{
        proxy_pass http://vtt_app;
        proxy_buffering off;
        proxy_read_timeout 300s;
    }}

    # Everything else, from gunicorn; nginx buffers the responses, so a slow client never holds a worker.
    location / {{
        proxy_pass http://vtt_app;
    }}
}}
"""

# A whole nginx.conf around the server block, for `nginx -p PREFIX -c PREFIX/nginx.conf`: tests and benchmarks.
STANDALONE = """\
# Run with: nginx -p {prefix} -c {prefix}/nginx.conf  (in the foreground; stop it with SIGTERM or SIGQUIT)
daemon off;
{user}worker_processes {workers};
pid {pid};
error_log {error_log} warn;

events {{
    worker_connections 1024;
}}

http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    access_log {access_log};
    client_body_temp_path {client_body_temp};
    proxy_temp_path {proxy_temp};
    fastcgi_temp_path {fastcgi_temp};
    uwsgi_temp_path {uwsgi_temp};
    scgi_temp_path {scgi_temp};

{server}}}
"""
# Where a standalone nginx keeps its files, in --prefix.
STANDALONE_FILES = {
    "pid": "nginx.pid", "error_log": "error.log", "access_log": "access.log",
    "client_body_temp": "client_body_temp", "proxy_temp": "proxy_temp", "fastcgi_temp": "fastcgi_temp",
    "uwsgi_temp": "uwsgi_temp", "scgi_temp": "scgi_temp",
}


def quoted(value: str) -> str:
    """A path as an nginx string (quoted: spaces are fine); '$' would start a variable, so none is allowed."""
    if "$" in value or "\n" in value:
        raise CommandError(f"nginx paths cannot contain '$' or a newline: {value!r}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def folder(path: Path | str) -> str:
    return quoted(str(Path(path).resolve()).rstrip("/") + "/")


class Command(BaseCommand):
    help = (
        "Print the nginx configuration of this deployment (its STATIC_ROOT and MEDIA_ROOT): static files and "
        "pair images sent by nginx, everything else proxied to gunicorn. Without --standalone, a server block "
        "for /etc/nginx/sites-available/ (Debian's nginx.conf names the workers' user: www-data, who must be "
        "able to read STATIC_ROOT and MEDIA_ROOT/pairs). With --standalone --prefix DIR, a whole nginx.conf "
        "that runs in the foreground as `nginx -p DIR -c DIR/nginx.conf`, its pid, logs and temporary files "
        "in DIR (tests and benchmarks). The app's environment must set VTT_IMAGE_ACCEL_REDIRECT to the "
        f"images' internal location ({DEFAULT_ACCEL_PREFIX} unless it is set to another)."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser):
        parser.add_argument("--listen", default="80", help="nginx's listen address (a port or host:port). Default: 80.")
        parser.add_argument("--server-name", default="_", help="server_name. Default: _ (any host; "
                            "Django's ALLOWED_HOSTS still decides).")
        parser.add_argument("--upstream", action="append", metavar="HOST:PORT",
                            help="A gunicorn address; repeat for several. Default: 127.0.0.1:8000.")
        parser.add_argument("--standalone", action="store_true", help="A whole nginx.conf, not a server block.")
        parser.add_argument("--prefix", type=Path, help="With --standalone: the folder of its pid, logs and "
                            "temporary files (it must exist); run nginx with -p PREFIX -c PREFIX/nginx.conf.")
        parser.add_argument("--user", help="With --standalone: the workers' user (nginx's `user` directive, "
                            "which counts only when nginx starts as root; without it, root's nginx runs its "
                            "workers as nobody). They must be able to read STATIC_ROOT and MEDIA_ROOT/pairs. "
                            "`--user root` only when that is meant, e.g. a test run as root on files in a "
                            "private temporary folder.")
        parser.add_argument("--workers", default="auto", help="With --standalone: worker_processes. Default: auto.")

    def handle(self, *args, **options):
        if not options["standalone"] and (options["prefix"] or options["user"] or options["workers"] != "auto"):
            raise CommandError("--prefix, --user and --workers go with --standalone (a server block for "
                               "sites-available takes them from /etc/nginx/nginx.conf)")
        if options["standalone"] and options["prefix"] is None:
            raise CommandError("--standalone needs --prefix DIR: its pid, logs and temporary files go there")
        accel = settings.VTT_IMAGE_ACCEL_REDIRECT or DEFAULT_ACCEL_PREFIX
        if not settings.VTT_IMAGE_ACCEL_REDIRECT:
            self.stderr.write(f"Note: VTT_IMAGE_ACCEL_REDIRECT is not set here; set VTT_IMAGE_ACCEL_REDIRECT={accel} "
                              "in the app's environment, or the app keeps sending the images itself.")
        static_url = urlsplit(settings.STATIC_URL)
        if static_url.netloc:
            raise CommandError(f"STATIC_URL is on another host ({settings.STATIC_URL}): nothing for this nginx to serve")
        static_path = "/" + static_url.path.strip("/") + "/"
        if not Path(settings.STATIC_ROOT).is_dir():
            self.stderr.write(f"Note: STATIC_ROOT ({settings.STATIC_ROOT}) does not exist yet: "
                              "run `python manage.py collectstatic`.")
        upstreams = options["upstream"] or ["127.0.0.1:8000"]
        server = SERVER.format(
            accel=accel,
            servers="\n".join(f"    server {address};" for address in upstreams),
            listen=options["listen"],
            server_name=options["server_name"],
            static_url=static_path,
            static_root=folder(settings.STATIC_ROOT),
            pairs_dir=folder(pairs_dir()),
        )
        if not options["standalone"]:
            self.stdout.write(server, ending="")
            return
        prefix = options["prefix"].resolve()
        if not prefix.is_dir():
            raise CommandError(f"--prefix {prefix} is not a folder")
        self.stdout.write(STANDALONE.format(
            prefix=prefix,
            **{name: quoted(str(prefix / file)) for name, file in STANDALONE_FILES.items()},
            user=f"user {options['user']};\n" if options["user"] else "",
            workers=options["workers"],
            server="\n".join(("    " + line) if line else "" for line in server.splitlines()) + "\n",
        ), ending="")
