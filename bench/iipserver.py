"""IIPImage (``iipsrv``, Debian's ``iipimage-server``) as a bench child: a few FastCGI processes, each bound to
its own 127.0.0.1 port, behind nginx (``fastcgi_pass`` to an upstream of them, kept-alive connections), the
usual way iipsrv is deployed. Everything lives in a folder of the bench's; stopped by PID.

No kept-alive FastCGI connections: an iipsrv process serves one connection at a time, so an idle kept-alive
connection holds a process while requests queue behind it (p99 of seconds, measured here)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from bench.processes import Children, free_port, http_status, wait_until

IIPSRV = Path("/usr/lib/iipimage-server/iipsrv.fcgi")
FCGI_PATH = "/fcgi-bin/iipsrv.fcgi"

NGINX_CONF = """
worker_processes {workers};
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy-temp;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    keepalive_requests 1000000;
    upstream iipsrv {{ {servers} }}
    server {{
        listen 127.0.0.1:{port};
        location = {fcgi_path} {{
            fastcgi_pass iipsrv;
            fastcgi_param QUERY_STRING $query_string;
            fastcgi_param REQUEST_METHOD $request_method;
            fastcgi_param REQUEST_URI $request_uri;
            fastcgi_param SERVER_PROTOCOL $server_protocol;
            fastcgi_param SERVER_NAME $server_name;
            fastcgi_param SERVER_PORT $server_port;
        }}
    }}
}}
"""


def iipsrv_environment(jpeg_quality: int, cache_mb: int) -> dict[str, str]:
    """iipsrv reads its settings from the environment (see ``man iipsrv``); no log file (it would cost), and
    one OpenMP thread per process (the processes already use every core)."""
    return {"PATH": "/usr/bin:/bin", "JPEG_QUALITY": str(jpeg_quality), "MAX_IMAGE_CACHE_SIZE": str(cache_mb),
            "VERBOSITY": "0", "OMP_NUM_THREADS": "1"}


def start_iipsrv(children: Children, tmp: Path, processes: int, jpeg_quality: int, cache_mb: int,
                 nginx_workers: int = 1) -> tuple[list[subprocess.Popen], subprocess.Popen, str]:
    """``processes`` iipsrv processes and nginx in front; returns (iipsrv processes, nginx, base URL) once
    nginx answers. RuntimeError if iipsrv or nginx is missing or exits."""
    if not IIPSRV.exists():
        raise RuntimeError(f"{IIPSRV} is missing; as root: apt-get install -y iipimage-server")
    ports = [free_port() for _ in range(processes)]
    env = iipsrv_environment(jpeg_quality, cache_mb)
    iips = [children.start([IIPSRV, "--bind", f"127.0.0.1:{port}"], f"iipsrv-{port}.log", env=env) for port in ports]
    port = free_port()
    conf = tmp / "nginx-iipsrv.conf"
    conf.write_text(NGINX_CONF.format(workers=nginx_workers, tmp=tmp, port=port, fcgi_path=FCGI_PATH,
                                      servers=" ".join(f"server 127.0.0.1:{p};" for p in ports)))
    nginx = children.start(["nginx", "-e", tmp / "nginx-error.log", "-p", tmp, "-c", conf, "-g", "daemon off;"],
                           "nginx-iipsrv.log")
    base = f"http://127.0.0.1:{port}"

    def answering() -> bool:
        for popen, name in [*((p, "iipsrv") for p in iips), (nginx, "nginx")]:
            if popen.poll() is not None:
                raise RuntimeError(f"{name} exited ({popen.returncode}); see {children.log_dir}, {tmp}")
        return http_status(base + "/") is not None

    wait_until(answering, 30, "nginx in front of iipsrv")
    return iips, nginx, base


def stop_iipsrv(children: Children, iips: list[subprocess.Popen], nginx: subprocess.Popen) -> None:
    """iipsrv finishes the accept it is blocked in before it honours SIGTERM: a short grace, then SIGKILL."""
    children.stop(nginx)
    for popen in iips:
        children.stop(popen, grace=1.0)
