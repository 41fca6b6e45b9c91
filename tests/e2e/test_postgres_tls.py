"""The orchestrator's store over TLS to PostgreSQL: `sslmode=verify-full` in the URL.

A private PostgreSQL (tests/e2e/pgserver.py) serves TLS with a certificate from a
throwaway CA and refuses plaintext connections from 127.0.0.1 in pg_hba.conf. The
store opens with the right CA, and refuses to with another CA or without TLS.
"""

from __future__ import annotations

import os
import pwd
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.core.errors import SagaError
from orchestrator.store.postgres import PostgresStore
from tests.e2e.pgserver import SERVER_USER, PrivatePostgres, private_postgres
from tools.certs import make_ca

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REFUSAL_WAIT_SECONDS = 2.0
"""How long the store keeps trying a connection that is refused."""


@pytest.fixture(scope="module")
def tls_postgres(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[PrivatePostgres, Path, Path]]:
    pki = tmp_path_factory.mktemp("pg-pki")
    ca = make_ca(pki)
    other_ca = make_ca(pki / "other", "other-ca")
    server = ca.issue("server", pki)
    with private_postgres() as pg:
        pg.stop()
        for source, name in ((server.cert, "server.crt"), (server.key, "server.key")):
            target = pg.data / name
            shutil.copyfile(source, target)
            os.chmod(target, 0o600)
            if os.geteuid() == 0:
                user = pwd.getpwnam(SERVER_USER)
                os.chown(target, user.pw_uid, user.pw_gid)
        with open(pg.data / "postgresql.conf", "a") as conf:
            conf.write("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
        hba = pg.data / "pg_hba.conf"
        rules = "hostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n"
        hba.write_text(rules + hba.read_text())
        pg.start()
        yield pg, ca.cert_file, other_ca.cert_file


async def opens(url: str) -> bool:
    store = PostgresStore(url, timeout=REFUSAL_WAIT_SECONDS)
    try:
        await store.open()
    except SagaError:
        return False
    await store.close()
    return True


async def test_the_store_connects_with_verify_full_and_refuses_another_ca_or_plaintext(
    tls_postgres: tuple[PrivatePostgres, Path, Path],
):
    pg, ca, other_ca = tls_postgres

    verified = await opens(f"{pg.url}?sslmode=verify-full&sslrootcert={ca}")
    other = await opens(f"{pg.url}?sslmode=verify-full&sslrootcert={other_ca}")
    plaintext = await opens(f"{pg.url}?sslmode=disable")

    assert (verified, other, plaintext) == (True, False, False)
