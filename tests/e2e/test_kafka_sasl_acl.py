"""The SASL_SSL lane: a broker of its own that speaks only SASL_SSL (SCRAM-SHA-512 over
TLS, certificates from the project's scripts) and authorises every request with KRaft's
StandardAuthorizer, prepared with the ACLs ``python -m shared.kafka_acls`` derives from
the services' brokers. Each service's user may write what it produces and read what it
consumes, and nothing else; the three services run on it end to end."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    TopicAuthorizationFailedError,
)
from pydantic import SecretStr

import infra
from devtools.serving import free_port
from devtools.stack import LocalStack, StackConfig
from infra.secure_kafka import SecureBroker, secure_broker
from shared.errors import StartupError
from shared.kafka import TOPIC_AUTHORIZATION_FAILED, ensure_topics, new_producer
from shared.kafka_acls import ServiceAcls, all_topics, service_acls
from shared.kafka_security import KafkaSecurity, security_from
from shared.topics import DEAD_LETTER_SUFFIX, ENROLMENT_REQUESTED
from tests.e2e.test_single_enrolment import eventually, sms_to, unique_worker

pytestmark = pytest.mark.e2e

SERVICES = ("registration", "coverage", "notifications")
PREFIX = f"sec{uuid.uuid4().hex[:8]}."
PARTITIONS = 2


def user(service: str) -> str:
    return f"perisai-{service}"


@pytest.fixture(scope="module")
def lane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    folder = tmp_path_factory.mktemp("sasl-lane")
    users = [user(s) for s in SERVICES] + ["outsider"]
    with secure_broker(folder, free_port(), free_port(), users) as broker:
        yield broker


@pytest.fixture(scope="module")
def acls(lane: SecureBroker) -> dict[str, ServiceAcls]:
    """The topics, created by the administrator, and every service's ACLs."""
    entries = service_acls(PREFIX)
    lane.acls([arguments for entry in entries for arguments in entry.acl_arguments()])
    admin = security(lane, "admin")
    asyncio.run(
        ensure_topics(lane.bootstrap, all_topics(entries), partitions=PARTITIONS, security=admin)
    )
    return {entry.service: entry for entry in entries}


def security(lane: SecureBroker, name: str, password: str | None = None) -> KafkaSecurity:
    return KafkaSecurity(
        "SASL_SSL",
        lane.ssl_context(),
        "SCRAM-SHA-512",
        name,
        SecretStr(password or lane.passwords[name]),
    )


async def may_write(lane: SecureBroker, service: str, topics: tuple[str, ...]) -> dict[str, bool]:
    producer = new_producer(lane.bootstrap, f"acl-test-{service}", security(lane, user(service)))
    await producer.start()
    try:
        allowed = {}
        for topic in topics:
            try:
                await asyncio.wait_for(producer.send_and_wait(topic, b"{}"), 20)
                allowed[topic] = True
            except TopicAuthorizationFailedError:
                allowed[topic] = False
        return allowed
    finally:
        await producer.stop()


@pytest.mark.parametrize("service", SERVICES)
async def test_a_service_may_write_the_topics_it_produces_and_no_other(
    lane: SecureBroker, acls: dict[str, ServiceAcls], service: str
) -> None:
    topics = all_topics(list(acls.values()))
    allowed = await may_write(lane, service, topics)
    assert {t for t, ok in allowed.items() if ok} == set(acls[service].writes)
    # e.g. registration may not announce a policy, nor coverage an enrolment
    assert len([t for t, ok in allowed.items() if not ok]) >= 8


async def read_one(lane: SecureBroker, name: str, topic: str, group: str) -> list[bytes | None]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=lane.bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **security(lane, name).client_options(),
    )
    await consumer.start()
    try:
        consumer.subscribe([topic])
        batches = await asyncio.wait_for(consumer.getmany(timeout_ms=5000), 30)
        await consumer.commit()
        return [record.value for records in batches.values() for record in records]
    finally:
        await consumer.stop()


async def describe_codes(lane: SecureBroker, name: str, topics: tuple[str, ...]) -> dict[str, int]:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=lane.bootstrap, **security(lane, name).client_options()
    )
    await admin.start()
    try:
        return {
            entry["topic"]: entry["error_code"]
            for entry in await admin.describe_topics(list(topics))
        }
    finally:
        await admin.close()


@pytest.mark.parametrize("service", SERVICES)
async def test_a_service_may_read_what_it_consumes_with_its_own_groups_only(
    lane: SecureBroker, acls: dict[str, ServiceAcls], service: str
) -> None:
    mine = acls[service]
    topic = mine.reads[0]
    group = f"{mine.group_prefix}acl-test-{uuid.uuid4().hex[:6]}"
    await read_one(lane, user(service), topic, group)  # may join, fetch and commit

    # Reading needs Read on the topic, which implies Describe: a topic the user may not
    # describe is one it may not read (aiokafka's subscribe only logs that it is not
    # authorised, so ask the metadata directly).
    codes = await describe_codes(lane, user(service), all_topics(list(acls.values())))
    refused = {t for t, code in codes.items() if code == TOPIC_AUTHORIZATION_FAILED}
    assert {t for t, code in codes.items() if code == 0} == set(mine.topics)
    assert refused == set(codes) - set(mine.topics)
    someone_else = next(a for a in acls.values() if a.service != service)
    with pytest.raises(GroupAuthorizationFailedError):
        await read_one(lane, user(service), topic, f"{someone_else.group_prefix}{service}")


async def test_a_user_without_acls_may_do_nothing(
    lane: SecureBroker, acls: dict[str, ServiceAcls]
) -> None:
    outsider = security(lane, "outsider")
    with pytest.raises(StartupError, match="missing or not visible"):
        await ensure_topics(lane.bootstrap, [PREFIX + ENROLMENT_REQUESTED], security=outsider)
    producer = AIOKafkaProducer(
        bootstrap_servers=lane.bootstrap, acks="all", **outsider.client_options()
    )
    await producer.start()
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await asyncio.wait_for(producer.send_and_wait(PREFIX + ENROLMENT_REQUESTED, b"x"), 20)
    finally:
        await producer.stop()


async def test_a_service_sees_its_topics_but_may_not_create_one(
    lane: SecureBroker, acls: dict[str, ServiceAcls]
) -> None:
    registration = security(lane, user("registration"))
    assert (
        await ensure_topics(lane.bootstrap, acls["registration"].topics, security=registration)
        == []
    )
    with pytest.raises(StartupError, match=f"{PREFIX}brand.new.v1; an operator creates them"):
        await ensure_topics(lane.bootstrap, [f"{PREFIX}brand.new.v1"], security=registration)


async def test_wrong_password_plaintext_and_an_untrusted_certificate_are_refused(
    lane: SecureBroker, acls: dict[str, ServiceAcls]
) -> None:
    name = user("coverage")
    wrong = security(lane, name, password="not-the-password")
    with pytest.raises(StartupError, match=r"SASL_SSL \(SCRAM-SHA-512, user perisai-coverage\)"):
        await ensure_topics(lane.bootstrap, [], security=wrong, wait_s=10)
    with pytest.raises(StartupError, match="over PLAINTEXT"):
        await ensure_topics(lane.bootstrap, [], wait_s=5)
    system_trust = security_from(
        "SASL_SSL", username=name, password=SecretStr(lane.passwords[name])
    )  # the lane's authority is not among the system's
    with pytest.raises(StartupError, match=r"CERTIFICATE_VERIFY_FAILED"):
        await ensure_topics(lane.bootstrap, [], security=system_trust, wait_s=10)


async def test_a_client_certificate_in_the_settings_is_accepted_by_the_broker(
    lane: SecureBroker, acls: dict[str, ServiceAcls]
) -> None:
    """The lane's broker requests a certificate but does not require one, so this shows
    the settings work together; tests/integration/test_kafka_tls_context.py shows the
    certificate is presented, against a server that requires it."""
    name = user("registration")
    with_certificate = security_from(
        "SASL_SSL",
        username=name,
        password=SecretStr(lane.passwords[name]),
        ca_file=lane.ca_file,
        cert_file=lane.client_cert.cert,
        key_file=lane.client_cert.key,
    )
    topics = acls["registration"].topics
    assert await ensure_topics(lane.bootstrap, topics, security=with_certificate) == []


def service_env(lane: SecureBroker, service: str) -> dict[str, str]:
    return {
        "PERISAI_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "PERISAI_KAFKA_USERNAME": user(service),
        "PERISAI_KAFKA_PASSWORD": lane.passwords[user(service)],
        "PERISAI_KAFKA_CA_FILE": str(lane.ca_file),
    }


@pytest.fixture(scope="module")
async def secure_stack(
    stack: None,
    lane: SecureBroker,
    acls: dict[str, ServiceAcls],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[LocalStack]:
    name = f"e2e_{uuid.uuid4().hex[:12]}"
    database_url = await infra.create_database_async(name)
    config = StackConfig.on_free_ports(
        database_url=database_url,
        kafka_bootstrap=lane.bootstrap,
        log_dir=tmp_path_factory.mktemp("secure-stack") / "logs",
        topic_prefix=PREFIX,
        service_extra_env={s: service_env(lane, s) for s in SERVICES},
    )
    running = LocalStack(config)
    try:
        await running.start()
        yield running
    finally:
        running.stop()
        await infra.drop_database_async(name)


async def test_the_three_services_run_over_sasl_ssl_within_their_acls(
    lane: SecureBroker, acls: dict[str, ServiceAcls], secure_stack: LocalStack
) -> None:
    worker = unique_worker()
    async with httpx.AsyncClient(auth=secure_stack.auth) as client:
        response = await client.post(
            f"{secure_stack.config.registration_url}/v1/enrolments",
            json=worker.model_dump(mode="json"),
            headers={"Idempotency-Key": f"sasl-{uuid.uuid4()}"},
        )
        assert response.status_code == 201, response.text
        worker_id = response.json()["worker_id"]
        await eventually(lambda: sms_to(client, secure_stack, "+62" + worker.phone[1:]), "SMS")
        policy = await client.get(
            f"{secure_stack.config.coverage_url}/v1/workers/{worker_id}/policy"
        )
        assert policy.json()["status"] == "active"

    # An unreadable upstream record reaches registration's dead-letter topic: the
    # consumer, the relay and the dead-letter path all run under the service's ACLs.
    admin = security(lane, "admin")
    dlq = PREFIX + ENROLMENT_REQUESTED + DEAD_LETTER_SUFFIX
    consumer = AIOKafkaConsumer(bootstrap_servers=lane.bootstrap, **admin.client_options())
    producer = new_producer(lane.bootstrap, "acl-test-upstream", admin)
    await consumer.start()
    await producer.start()
    try:
        partitions = [TopicPartition(dlq, p) for p in range(PARTITIONS)]

        async def dead_letters() -> int:
            return sum((await consumer.end_offsets(partitions)).values())

        before = await dead_letters()
        await producer.send_and_wait(PREFIX + ENROLMENT_REQUESTED, b"not json")

        async def one_more() -> bool:
            return await dead_letters() == before + 1

        await eventually(one_more, "a dead letter on " + dlq)
    finally:
        await producer.stop()
        await consumer.stop()
    for process in secure_stack.processes.values():
        assert process.running, process.log_tail()
        assert "AuthorizationFailed" not in process.log_tail(400), process.name
