"""Replies nobody has published: the client reads every plausible shape and learns the real one.

The stand-in plays each shape it can be switched to (see emulators/powercode.py); the probe
learns what this "PowerCode" says, and from then on the client goes by what was recorded.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from utopia_handler.clients.errors import RejectedError
from utopia_handler.clients.powercode import (
    EmptyReply,
    LearnedReplies,
    PowerCodeClient,
)
from utopia_handler.emulators.powercode import (
    NO_SERVICES_SHAPES,
    NOT_FOUND_SHAPES,
    TAG_REPLY_SHAPES,
    PowerCodeEmulator,
)

from ._shared import FAST, PC_KEY
from .test_powercode_client import AVERY


@pytest.fixture
def emulator() -> Iterator[PowerCodeEmulator]:
    with PowerCodeEmulator(api_key=PC_KEY, port=0) as running:
        yield running


def client_for(
    emulator: PowerCodeEmulator, learned: LearnedReplies | None = None
) -> PowerCodeClient:
    return PowerCodeClient(
        emulator.api_url,
        emulator.uapi_url,
        PC_KEY,
        timeouts=FAST,
        learned=(lambda: learned) if learned is not None else None,
    )


@pytest.mark.parametrize("shape", sorted(NOT_FOUND_SHAPES))
def test_every_not_found_shape_reads_as_no_customer_once_probed(
    emulator: PowerCodeEmulator, shape: str
) -> None:
    emulator.not_found_shape = shape
    with client_for(emulator) as client:
        report = client.probe_replies()
    with client_for(emulator, report.learned) as client:
        assert client.find_customer_by_site("204817") is None
        assert client.read_customer(424242) is None
        # And a customer that exists is still found.
        created = client.create_customer(AVERY)
        found = client.find_customer_by_site("204817")
        assert found is not None and found.customer_id == created.customer_id


@pytest.mark.parametrize("shape", sorted(NOT_FOUND_SHAPES))
def test_before_any_probe_the_plausible_shapes_still_read_as_no_customer(
    emulator: PowerCodeEmulator, shape: str
) -> None:
    emulator.not_found_shape = shape
    with client_for(emulator) as client:
        if shape == "refusal_invalid":
            # "Invalid customer" says nothing of "not found": without the probe it is a refusal,
            # shown to a person, rather than a guess that could create a second account.
            with pytest.raises(RejectedError):
                client.find_customer_by_site("204817")
        else:
            assert client.find_customer_by_site("204817") is None


def test_once_learned_a_refusal_that_merely_sounds_like_not_found_is_an_error(
    emulator: PowerCodeEmulator,
) -> None:
    learned = LearnedReplies(customer_not_found=EmptyReply(0))
    emulator.not_found_shape = "refusal_not_found"
    with client_for(emulator, learned) as client, pytest.raises(RejectedError) as caught:
        client.find_customer_by_site("204817")
    assert caught.value.message == "readCustomer refused: statusCode 6 (Customer not found)"


def test_a_learned_message_echoing_the_site_id_matches_any_site(
    emulator: PowerCodeEmulator,
) -> None:
    emulator.not_found_shape = "refusal_no_match"
    with client_for(emulator) as client:
        report = client.probe_replies()
    learned = report.learned.customer_not_found
    assert learned == EmptyReply(2, "No customer matches {field} {value}")
    with client_for(emulator, report.learned) as client:
        assert client.find_customer_by_site("318002") is None
    # A different refusal with the same code is not taken for "not found".
    assert not learned.matches(
        2, "No customer matches extAccountID 318002 (database locked)", "extAccountID", "318002"
    )


@pytest.mark.parametrize("shape", sorted(NO_SERVICES_SHAPES))
def test_every_no_services_shape_reads_as_none_once_probed(
    emulator: PowerCodeEmulator, shape: str
) -> None:
    emulator.no_services_shape = shape
    customer_id = emulator.add_customer("Avery", "Lindqvist", "1432 S CANYON VIEW DR", "Orem")
    with client_for(emulator) as client:
        report = client.probe_replies(customer_id)
    assert report.learned.no_services is not None
    with client_for(emulator, report.learned) as client:
        assert client.list_service_ids(customer_id) == []
        client.add_service(customer_id, 163)
        assert client.list_service_ids(customer_id) == [163]


def test_the_probe_cannot_learn_no_services_from_a_customer_that_has_some(
    emulator: PowerCodeEmulator,
) -> None:
    customer_id = emulator.add_customer("Avery", "Lindqvist", "1432 S CANYON VIEW DR", "Orem")
    with client_for(emulator) as client:
        client.add_service(customer_id, 163)
        report = client.probe_replies(customer_id)
    assert report.learned.no_services is None
    assert any("still unknown" in finding for finding in report.findings)


def test_the_probe_writes_nothing(emulator: PowerCodeEmulator) -> None:
    customer_id = emulator.add_customer("Avery", "Lindqvist", "1432 S CANYON VIEW DR", "Orem")
    with client_for(emulator) as client:
        client.probe_replies(customer_id)
    actions = [dict(r.form).get("action") for r in emulator.requests]
    assert actions == ["searchCustomers", "readCustomer", "readCustomer", "readCustomerService"]
    assert emulator.service_adds == [] and emulator.tickets == {}


@pytest.mark.parametrize("action", ["createCustomer", "addCustomerService", "readCustomerService"])
def test_replies_without_a_statuscode_are_read_as_success(
    emulator: PowerCodeEmulator, action: str
) -> None:
    emulator.omit_status_code = frozenset({action})
    with client_for(emulator) as client:
        customer_id = client.create_customer(AVERY).customer_id
        client.add_service(customer_id, 163)
        assert client.list_service_ids(customer_id) == [163]
    assert emulator.customer_services[customer_id] == {163: 1}


@pytest.mark.parametrize("style", ["evidence", "strings", "numbers"])
def test_ids_as_numbers_or_strings(emulator: PowerCodeEmulator, style: str) -> None:
    emulator.id_style = style
    with client_for(emulator) as client:
        customer_id = client.create_customer(AVERY).customer_id
        client.add_service(customer_id, 163)
        client.add_tags(customer_id, [1])
        assert client.list_service_ids(customer_id) == [163]
        assert client.list_tag_ids(customer_id) == [1]
        found = client.find_customer_by_site("204817")
        assert found is not None and found.customer_id == customer_id


def test_a_create_reply_with_an_id_and_a_warning_is_a_created_customer(
    emulator: PowerCodeEmulator,
) -> None:
    emulator.create_warning = (14, "Customer created but welcome e-mail failed")
    with client_for(emulator) as client:
        created = client.create_customer(AVERY)
    assert created.customer_id in emulator.customers
    assert created.warning == (
        "createCustomer refused: statusCode 14 (Customer created but welcome e-mail failed)"
    )


@pytest.mark.parametrize("shape", TAG_REPLY_SHAPES)
def test_every_tag_reply_shape_ends_with_the_tags_on_the_customer(
    emulator: PowerCodeEmulator, shape: str
) -> None:
    emulator.tag_reply = shape
    customer_id = emulator.add_customer("Avery", "Lindqvist", "1432 S CANYON VIEW DR", "Orem")
    with client_for(emulator) as client:
        client.add_tags(customer_id, [3, 1])
    assert emulator.customer_tags[customer_id] == {1, 3}
    posts = [r for r in emulator.requests if r.method == "POST" and "/uapi/" in r.path]
    assert [dict(r.query)["tags[]"] for r in posts] == ["3", "1"]
    reads = [r for r in emulator.requests if r.method == "GET"]
    # Only a reply that does not show the tag is followed by a read-back.
    assert len(reads) == (0 if shape in ("all", "added") else 1)
