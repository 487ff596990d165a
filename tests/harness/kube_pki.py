"""A throw-away PKI for the test cluster, made with the ``openssl`` command.

kube-apiserver serves only TLS and authenticates clients by certificate, and it signs service
account tokens, so :class:`tests.harness.kube.KubeTestCluster` needs a CA, a serving
certificate, an admin client certificate and a service-account key before it starts anything.
:func:`make_pki` makes them with the ``openssl`` command line (``KubeTestCluster.available``
checks that it is on PATH), once for each cluster directory.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from flotilla.embedded.errors import ComponentFailed

__all__ = ["make_pki"]


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise ComponentFailed("kube", f"openssl {' '.join(args[:2])} failed: {proc.stderr.strip()}")


def make_pki(pki: Path, host: str, service_ip: str) -> None:
    """CA, kube-apiserver serving cert, admin client cert and service-account key (EC P-256).

    Writes into ``pki``: ``ca.crt``/``ca.key``; ``apiserver.crt``/``apiserver.key``, valid for
    ``host``, 127.0.0.1, the ``kubernetes`` Service's cluster IP ``service_ip`` and its DNS
    names; ``admin.crt``/``admin.key`` for the user ``flotilla-admin`` in ``system:masters``;
    and ``sa.key``/``sa.pub``, the key pair that signs service account tokens."""
    pki.mkdir(parents=True, exist_ok=True)
    days = "3650"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", days,
        "-subj", "/CN=flotilla-test-ca",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        cwd=pki,
    )  # fmt: skip
    sans = [
        f"IP:{host}",
        "IP:127.0.0.1",
        f"IP:{service_ip}",
        "DNS:localhost",
        "DNS:kubernetes",
        "DNS:kubernetes.default",
        "DNS:kubernetes.default.svc",
        "DNS:kubernetes.default.svc.cluster.local",
    ]
    certs = {
        "apiserver": (
            "/CN=kube-apiserver",
            f"subjectAltName={','.join(dict.fromkeys(sans))}\n"
            "extendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n",
        ),
        "admin": (
            "/O=system:masters/CN=flotilla-admin",
            "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n",
        ),
    }
    for name, (subject, extensions) in certs.items():
        (pki / f"{name}.ext").write_text(extensions)
        _openssl(
            "req", "-new", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=pki
        )
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", days, "-out", f"{name}.crt", "-extfile", f"{name}.ext",
            cwd=pki,
        )  # fmt: skip
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "sa.key", cwd=pki)
    _openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)
    for key in pki.glob("*.key"):
        key.chmod(0o600)
