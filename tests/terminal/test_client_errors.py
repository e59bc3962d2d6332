"""`error_from_response`: the one reading of the server's refusals, shared by the
terminal's client and the staff client (`hcard.provisioning.staff`)."""

import pytest
import requests

from hcard.errors import Code, HCardError
from hcard.provisioning.staff import StaffClient
from hcard.terminal.client import ServerUnreachableError, error_from_response, post_json


def test_a_refusal_of_the_real_server_becomes_its_code(live_server):
    response = requests.post(
        f"{live_server.url}/v1/enrol",
        json={"code": "ZZZZ-ZZZZ", "public_key": "00" * 32, "name": "Kasse"},
        timeout=30,
    )
    assert not response.ok
    error = error_from_response(response)
    assert isinstance(error, HCardError)
    assert error.code == Code.ENROLMENT_CODE_INVALID


def test_the_staff_client_reads_refusals_the_same_way(live_server):
    staff = StaffClient(live_server.url, token="not-a-token")
    with pytest.raises(HCardError) as refused:
        staff.request("GET", "/v1/staff/merchants")
    response = requests.get(
        f"{live_server.url}/v1/staff/merchants",
        headers={"Authorization": "Bearer not-a-token"},
        timeout=30,
    )
    assert refused.value.code == error_from_response(response).code


@pytest.mark.parametrize("mode", ["http500", "garbage"])
def test_no_usable_answer_is_unreachable(live_server, net_proxy, mode):
    proxy = net_proxy(live_server.url)
    proxy.mode = mode
    response = requests.post(f"{proxy.url}/v1/enrol", json={}, timeout=30)
    if mode == "http500":
        assert isinstance(error_from_response(response), ServerUnreachableError)
    with pytest.raises(ServerUnreachableError):
        post_json(f"{proxy.url}/v1/enrol", {})
