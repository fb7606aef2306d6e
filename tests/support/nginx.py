"""The nginx role of deploy/ansible, rendered and run under a temporary directory.

The role's templates are rendered with jinja2 from the role's own defaults
(plus whatever the caller overrides), pointed at temporary paths and a free
loopback port, and served by the machine's nginx. The integration tests use
it to check what nginx answers by itself; the benchmark harness uses it to
put the deployed configuration in front of the app.

The only changes made to the rendered text are the ones a root-less
temporary layout forces (pid file, logs, temp paths, the include
directories); each is recorded in ``Nginx.changes`` and fails loudly if the
template no longer contains what it replaces.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.processes import free_port, stop_process, wait_for_port

NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.path.exists(p)), None)
OPENSSL = shutil.which("openssl")

ROLE = Path(__file__).resolve().parents[2] / "deploy" / "ansible" / "roles" / "nginx"
UPSTREAM_DIR = "/etc/nginx/peregrine-upstream.d/"


def role_defaults() -> dict:
    """The scalar defaults of the role (its defaults/main.yml is flat ``key: value``)."""
    values = {}
    for line in (ROLE / "defaults" / "main.yml").read_text().splitlines():
        match = re.match(r"^(nginx_\w+): (.+)$", line)
        if not match or "{{" in match.group(2):
            continue
        raw = match.group(2).strip()
        if raw in ("true", "false"):
            values[match.group(1)] = raw == "true"
        elif raw == "[]":
            values[match.group(1)] = []
        else:
            values[match.group(1)] = raw.strip('"')
    return values


def render(template: str, **variables) -> str:
    import jinja2  # only where nginx is rendered: the tests skip without it

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(ROLE / "templates"),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    # Ansible's filter, as the templates use it.
    env.filters["bool"] = lambda v: v if isinstance(v, bool) else str(v).lower() in (
        "1", "true", "yes", "on")
    context = {**role_defaults(), "ansible_managed": "rendered from the role", **variables}
    return env.get_template(template).render(context)


def self_signed_certificate(directory: Path) -> None:
    """peregrine.crt and peregrine.key in ``directory``: P-256, as the role generates."""
    if OPENSSL is None:
        raise RuntimeError("openssl is needed for the lb site's certificate")
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=t",
                    "-keyout", str(directory / "peregrine.key"),
                    "-out", str(directory / "peregrine.crt")],
                   check=True, capture_output=True)


class Nginx:
    """nginx with the role's nginx.conf and one site, under a temporary directory.

    Plain HTTP listens on ``self.port`` in either site mode (the lb site's
    redirecting server, or the edge listener).
    """

    def __init__(self, site_template: str, upstreams: list[str], **variables):
        # Not pytest's tmp_path: nginx's workers must be able to reach their temp files.
        self.root = Path(tempfile.mkdtemp(prefix="peregrine-nginx-"))
        self.root.chmod(0o755)
        self.port = free_port()
        self.changes: list[tuple[str, str]] = []
        variables = {"nginx_edge_listen": f"127.0.0.1:{self.port}",
                     "nginx_http_port": self.port, **variables}
        (self.root / "sites").mkdir()
        (self.root / "upstream.d").mkdir()
        for index, address in enumerate(upstreams):
            (self.root / "upstream.d" / f"{index}.conf").write_text(render(
                "upstream-server.conf.j2", nginx_upstream_server={"address": address},
                nginx_upstream_server_down=False, **variables))
        site = self._replace(render(site_template, **variables), UPSTREAM_DIR,
                             f"{self.root}/upstream.d/")
        (self.root / "sites" / "peregrine.conf").write_text(site)
        main = render("nginx.conf.j2", **variables)
        main = self._replace(main, "user www-data;",
                             "user root;" if os.geteuid() == 0 else "")
        main = self._replace(main, "pid /run/nginx.pid;", f"pid {self.root}/nginx.pid;")
        main = self._replace(main, "/var/log/nginx/", f"{self.root}/")
        main = self._replace(main, "    include /etc/nginx/conf.d/*.conf;\n", "")
        # Temp paths of our own: the compiled-in ones may not be writable here.
        temp_paths = "".join(f"    {kind}_temp_path {self.root}/{kind};\n" for kind in (
            "client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        main = self._replace(main, "    include /etc/nginx/sites-enabled/*;\n",
                             f"    include {self.root}/sites/*.conf;\n{temp_paths}")
        self.conf = self.root / "nginx.conf"
        self.conf.write_text(main)
        self.proc = None

    def _replace(self, text: str, old: str, new: str) -> str:
        # A template change that drops one of these must fail loudly, not test less.
        assert old in text, f"{old!r} not in the rendered configuration"
        self.changes.append((old.strip(), new.strip()))
        return text.replace(old, new)

    def test_config(self) -> None:
        result = subprocess.run([NGINX, "-t", "-q", "-c", str(self.conf)],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr

    def start(self) -> Nginx:
        self.test_config()
        self.proc = subprocess.Popen([NGINX, "-c", str(self.conf), "-g", "daemon off;"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for_port(self.port, 10, self.proc)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.proc, grace=10)  # TERM: fast shutdown of master and workers
        shutil.rmtree(self.root, ignore_errors=True)
