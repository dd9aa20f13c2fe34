"""What the NBD bridge relies on: tags in events, zero-copy read data, handoff.

Hand-built PDUs (struct.pack at spec offsets) play the controller.
"""

from __future__ import annotations

import struct

import pytest

from nvmecontrol.errors import LocalProtocolError
from nvmecontrol.wire.capsule import decode_sqe
from nvmecontrol.wire.nvm import FUA, NvmOpc, encode_io
from nvmecontrol.wire.qpair import Completion, HostQueuePair, ReadData


def ch(ptype, flags, hlen, pdo, plen) -> bytes:
    return struct.pack("<BBBBI", ptype, flags, hlen, pdo, plen)


def c2h(cccid, off, data, flags) -> bytes:
    return ch(0x07, flags, 24, 24, 24 + len(data)) + struct.pack("<HHII4x", cccid, 0, off, len(data)) + data


def resp(cid, status=0) -> bytes:
    return ch(0x05, 0, 24, 0, 24) + struct.pack("<IIHHHH", 0, 0, 0xFFFF, 0, cid, status << 1)


ICRESP = ch(0x01, 0, 128, 0, 128) + struct.pack("<HBBI", 0, 0, 0, 0x20000) + bytes(112)
LAST, SUCCESS = 0x04, 0x08


def host(queue_size=8) -> HostQueuePair:
    h = HostQueuePair(queue_size=queue_size, buffer_size=4096)
    h.start()
    h.take_outgoing()
    h.decoder.feed(ICRESP)
    h.receive()
    h.sq_flow_control = False
    return h


def feed(qp, raw: bytes) -> list:
    qp.decoder.feed(raw)
    return qp.receive()


def test_encode_io_fills_opcode_nsid_lba_count_and_flags():
    raw = encode_io(NvmOpc.WRITE, 7, slba=(1 << 33) + 5, nlb=16, cdw12_flags=FUA)
    sqe = decode_sqe(raw)
    assert (sqe.opc, sqe.flags, sqe.nsid) == (0x01, 0x40, 7)  # PSDT: SGL
    assert (sqe.cdw10, sqe.cdw11, sqe.cdw12) == (5, 2, 15 | FUA)


def test_raw_sqe_gets_cid_and_transport_sgl_and_tag_comes_back():
    h = host()
    tag = object()
    cid = h.submit(encode_io(NvmOpc.READ, 1, 0, 8), read_len=4096, tag=tag)
    sent = b"".join(bytes(b) for b in h.take_outgoing())
    sqe = decode_sqe(sent[8:72])
    assert sqe.cid == cid
    assert (sqe.sgl.length, sqe.sgl.type) == (4096, 0x5A)
    events = feed(h, c2h(cid, 0, b"d" * 4096, LAST) + resp(cid))
    assert events[-1] == Completion(cid, events[-1].cqe, tag)


def test_read_data_arrive_as_views_then_the_completion_with_the_tag():
    h = host()
    cid = h.submit(encode_io(NvmOpc.READ, 1, 0, 2), read_len=1024, tag="req")
    h.take_outgoing()
    events = feed(h, c2h(cid, 0, b"a" * 512, LAST) + c2h(cid, 512, b"b" * 512, LAST | SUCCESS))
    assert [type(e) for e in events] == [ReadData, ReadData, Completion]
    assert [(e.offset, bytes(e.data), e.tag) for e in events[:2]] == \
        [(0, b"a" * 512, "req"), (512, b"b" * 512, "req")]
    assert isinstance(events[0].data, memoryview)  # no copy
    assert events[2].tag == "req" and events[2].cqe.status == 0


def test_a_read_whose_one_c2hdata_completes_it_is_one_event_with_its_data():
    h = host()
    cid = h.submit(encode_io(NvmOpc.READ, 1, 0, 1), read_len=512, tag="req")
    h.take_outgoing()
    (ev,) = feed(h, c2h(cid, 0, b"z" * 512, LAST | SUCCESS))
    assert type(ev) is Completion and (ev.tag, ev.cqe.status) == ("req", 0)
    assert isinstance(ev.data, memoryview) and bytes(ev.data) == b"z" * 512
    assert h.outstanding == 0


def test_a_read_answered_with_data_then_a_response_completes_without_data():
    h = host()
    cid = h.submit(encode_io(NvmOpc.READ, 1, 0, 1), read_len=512, tag="req")
    h.take_outgoing()
    events = feed(h, c2h(cid, 0, b"z" * 512, LAST) + resp(cid))
    assert [type(e) for e in events] == [ReadData, Completion]
    assert events[1].data is None and events[1].tag == "req"


def test_a_successful_response_to_a_read_that_got_no_data_is_a_protocol_error():
    """A buffer the controller never filled must not be handed out as data."""
    from nvmecontrol.errors import PeerProtocolError

    h = host()
    cid = h.submit(encode_io(NvmOpc.READ, 1, 0, 1), read_len=512, tag="req")
    h.take_outgoing()
    with pytest.raises(PeerProtocolError, match="success after 0 of its 512 bytes"):
        feed(h, resp(cid))
    # An error status without data is fine: nothing is handed out.
    cid = h.submit(encode_io(NvmOpc.READ, 1, 0, 1), read_len=512, tag="req2")
    h.take_outgoing()
    (ev,) = feed(h, resp(cid, status=0x80))
    assert ev.cqe.status == 0x80


def test_read_data_that_failed_their_digest_are_not_handed_on():
    h = HostQueuePair(queue_size=8, ddgst=True, buffer_size=4096)
    h.start()
    h.take_outgoing()
    h.decoder.feed(ch(0x01, 0, 128, 0, 128) + struct.pack("<HBBI", 0, 0, 0x02, 0x20000)
                   + bytes(112))
    h.receive()
    h.sq_flow_control = False
    cid = h.submit(encode_io(NvmOpc.READ, 1, 0, 1), read_len=512, tag="req")
    h.take_outgoing()
    data = b"z" * 512
    pdu = ch(0x07, LAST | SUCCESS | 0x02, 24, 24, 24 + 512 + 4) + \
        struct.pack("<HHII4x", cid, 0, 0, 512) + data + b"\0\0\0\0"  # a wrong DDGST
    (ev,) = feed(h, pdu)
    assert ev.data is None and ev.cqe.status == 0x22  # Transient Transport Error


def test_records_are_queued_until_the_queue_is_full_and_are_their_tags():
    class Rec:
        def __init__(self, slba):
            self.opc, self.nsid, self.c10, self.c11, self.c12 = 0x02, 3, slba, 0, 7
            self.data, self.read_len = None, 4096

    h = host(queue_size=4)  # three commands at most
    recs = [Rec(i * 8) for i in range(5)]
    assert h.queue_records(recs) == 3
    sent = b"".join(bytes(b) for b in h.take_outgoing())
    sqes = [decode_sqe(sent[i * 72 + 8:i * 72 + 72]) for i in range(3)]
    assert [(q.opc, q.nsid, q.cdw10, q.cdw12, q.sgl.length) for q in sqes] == \
        [(0x02, 3, 0, 7, 4096), (0x02, 3, 8, 7, 4096), (0x02, 3, 16, 7, 4096)]
    _data, ev = feed(h, c2h(sqes[1].cid, 0, b"d" * 4096, LAST) + resp(sqes[1].cid))
    assert ev.tag is recs[1]
    assert h.queue_records(recs, 3) == 4  # one CID free again: the fourth goes


def test_a_cid_reused_within_a_batch_keeps_each_commands_tag():
    h = host(queue_size=2)  # one command at a time: the CID must be reused
    first = h.submit(encode_io(NvmOpc.FLUSH, 1), tag="first")
    h.take_outgoing()
    events = feed(h, resp(first))
    second = h.submit(encode_io(NvmOpc.FLUSH, 1), tag="second")
    assert second == first
    assert events[0].tag == "first"
    assert feed(h, resp(second))[0].tag == "second"


def test_outstanding_tags_are_what_a_lost_connection_hands_back():
    h = host()
    h.submit(encode_io(NvmOpc.FLUSH, 1), tag="a")
    cid = h.submit(encode_io(NvmOpc.FLUSH, 1), tag="b")
    h.take_outgoing()
    feed(h, resp(cid))
    assert h.outstanding_tags() == ["a"]


def test_handoff_state_round_trips_an_idle_queue_pair():
    h = host(queue_size=16)
    cid = h.submit(encode_io(NvmOpc.FLUSH, 1))
    h.take_outgoing()
    with pytest.raises(LocalProtocolError):
        h.handoff_state()  # a command is outstanding
    feed(h, resp(cid))
    state = h.handoff_state()
    adopted = HostQueuePair.adopt(state)
    assert adopted.established == h.established
    assert (adopted.queue_size, adopted.sq_flow_control, adopted.sqtail) == (16, False, 1)
    cid2 = adopted.submit(encode_io(NvmOpc.FLUSH, 1), tag="t")
    adopted.take_outgoing()
    assert feed(adopted, resp(cid2))[0].tag == "t"


def test_an_unconnected_queue_pair_cannot_be_handed_over():
    with pytest.raises(LocalProtocolError):
        HostQueuePair(queue_size=8).handoff_state()


def test_records_with_digests_and_in_capsule_data_reach_the_controller_intact():
    """queue_records' framed branch (header digest, data digest, in-capsule data)."""
    from nvmecontrol.wire import pdu as P
    from nvmecontrol.wire.qpair import Command, ControllerQueuePair

    h = HostQueuePair(queue_size=8, hdgst=True, ddgst=True, buffer_size=4096)
    c = ControllerQueuePair()
    h.start()
    c.decoder.feed(P.join(h.take_outgoing()))
    c.receive()
    h.decoder.feed(P.join(c.take_outgoing()))
    h.receive()
    h.sq_flow_control = False

    class Rec:
        def __init__(self, opc, data, read_len):
            self.opc, self.nsid, self.c10, self.c11, self.c12 = opc, 1, 5, 0, 0
            self.data, self.read_len = data, read_len

    payload = bytes(range(256)) * 2
    assert h.queue_records([Rec(0x01, payload, 0), Rec(0x02, None, 512)]) == 2
    c.decoder.feed(P.join(h.take_outgoing()))
    cmds = c.receive()
    assert [type(x) for x in cmds] == [Command, Command]
    assert bytes(cmds[0].data) == payload and not cmds[0].digest_error
    assert cmds[1].data is None
    assert [decode_sqe(x.sqe).opc for x in cmds] == [0x01, 0x02]
