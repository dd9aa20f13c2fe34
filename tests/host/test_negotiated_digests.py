"""What was negotiated is what the user gets: a declined digest is an error, not a silent downgrade."""

from __future__ import annotations

import pytest

from nvmecontrol.errors import Unsupported
from nvmecontrol.host.association import AssociationParams, connect_association


@pytest.mark.parametrize("allow_h, allow_d, ask_h, ask_d, named", [
    (True, False, False, True, "declined data digests"),
    (False, True, True, False, "declined header digests"),
    (False, False, True, True, "declined header and data digests"),
])
def test_declined_digest_is_refused(nvmfd_factory, host_identity, allow_h, allow_d, ask_h,
                                    ask_d, named):
    target = nvmfd_factory(allow_hdgst=allow_h, allow_ddgst=allow_d)
    with pytest.raises(Unsupported, match=named):
        connect_association(target.address, target.subnqn, host_identity,
                            AssociationParams(hdgst=ask_h, ddgst=ask_d, timeout_s=5))
    # Nothing is left behind on the target.
    with target.control() as ctl:
        assert ctl.request("list")["associations"] == []


def test_granted_digests_are_used(nvmfd_factory, host_identity):
    target = nvmfd_factory()
    assoc = connect_association(target.address, target.subnqn, host_identity,
                                AssociationParams(hdgst=True, ddgst=True, num_io_queues=1,
                                                  timeout_s=5))
    try:
        for q in [assoc.admin, *assoc.io]:
            est = q.driver.established
            assert (est.hdgst, est.ddgst) == (True, True)
    finally:
        assoc.shutdown()
