"""FreeBSD ``discover`` text and the JSON form of the discovery log."""

import json

from nvmecontrol.cli.render.discovery import (
    discovery_to_json,
    eflags_to_json,
    render_discovery_text,
    treq_to_json,
)
from nvmecontrol.wire.discovery import (
    DiscoveryHeader,
    DiscoveryLogEntry,
    decode_discovery_log,
    encode_discovery_log,
    rdma_tsas,
    tcp_tsas,
)

# FreeBSD Journal, "NVMe over Fabrics in FreeBSD": discover against a Linux target.
JOURNAL_SAMPLE = """\
Discovery
=========
Entry 01
========
 Transport type:       TCP
 Address family:       AF_INET
 Subsystem type:       NVMe
 SQ flow control:      optional
 Secure Channel:       Not specified
 Port ID:              1
 Controller ID:        Dynamic
 Max Admin SQ Size:    32
 Sub NQN:              nvme-test-target
 Transport address:    10.0.0.118
 Service identifier:   4420
 Security Type:        None
"""


def journal_entry(**kw) -> DiscoveryLogEntry:
    values = dict(trtype=3, adrfam=1, subtype=2, treq=0x4, portid=1, cntlid=0xFFFF, asqsz=32,
                  subnqn="nvme-test-target", traddr="10.0.0.118", trsvcid="4420",
                  tsas=tcp_tsas(0))
    values.update(kw)
    return DiscoveryLogEntry(**values)


def test_journal_sample_byte_for_byte():
    # Through the wire format, as the command does it.
    header, entries = decode_discovery_log(encode_discovery_log(3, [journal_entry()]))
    assert render_discovery_text(header, entries) == JOURNAL_SAMPLE


def test_values_start_at_column_23():
    for line in render_discovery_text(None, [journal_entry()]).splitlines()[4:]:
        assert line.startswith(" ") and line[22] == " " and line[23] != " ", line


def test_no_entries():
    assert render_discovery_text(DiscoveryHeader(0, 0, 0), []) == (
        "Discovery\n=========\nNo entries found\n"
    )


def test_entries_are_numbered_from_one_with_two_digits():
    text = render_discovery_text(None, [journal_entry()] * 11)
    assert "Entry 01\n" in text and "Entry 10\n" in text and "Entry 11\n" in text
    assert "Entry 00" not in text


def test_unknown_values_print_hex_without_the_freebsd_newline_bug():
    e = journal_entry(trtype=7, adrfam=9, subtype=3)
    lines = render_discovery_text(None, [e]).splitlines()
    assert " Transport type:       0x07" in lines
    assert " Address family:       0x09" in lines
    # Subtype 3 (current discovery subsystem) is unknown to FreeBSD too.
    assert " Subsystem type:       0x03" in lines
    assert "" not in lines  # no blank line after the hex value
    # Unknown transport: neither the TCP nor the RDMA block.
    assert not any(line.startswith(" Security Type") for line in lines)


def test_value_mappings():
    text = render_discovery_text(None, [
        journal_entry(adrfam=2, subtype=1, treq=0x1, cntlid=0xFFFE),
        journal_entry(adrfam=3, treq=0x2, cntlid=17, tsas=tcp_tsas(1)),
        journal_entry(trtype=2, adrfam=4, treq=0x3),
        journal_entry(trtype=254, adrfam=254, tsas=tcp_tsas(2)),
    ])
    for expected in (
        " Address family:       AF_INET6\n",
        " Subsystem type:       Discovery\n",
        " SQ flow control:      required\n",
        " Secure Channel:       Required\n",
        " Controller ID:        Static\n",
        " Address family:       InfiniBand\n",
        " Secure Channel:       Not required\n",
        " Controller ID:        17\n",
        " Security Type:        TLS 1.2\n",
        " Transport type:       Fibre Channel\n",
        " Address family:       Fibre Channel\n",
        " Secure Channel:       0x03\n",
        " Transport type:       Intra-host\n",
        " Address family:       Intra-host\n",
    ):
        assert expected in text, expected
    assert "TLS 1.3" not in text  # the intra-host entry has no Security Type line


def test_rdma_block():
    e = journal_entry(trtype=1, tsas=rdma_tsas(1, 2, 1, 0x8001))
    text = render_discovery_text(None, [e])
    assert text.endswith(
        " Service identifier:   4420\n"
        " RDMA Service Type:    Reliable connected\n"
        " RDMA Provider Type:   InfiniBand\n"
        " RDMA CMS:             RDMA_IP_CM\n"
        " Partition key:        32769\n"
    )
    odd = render_discovery_text(None, [journal_entry(trtype=1, tsas=rdma_tsas(2, 9, 5, 0))])
    assert " RDMA Service Type:    Reliable datagram\n" in odd
    assert " RDMA Provider Type:   0x09\n" in odd and " RDMA CMS:             0x05\n" in odd


def test_non_printable_bytes_in_strings_are_masked():
    e = journal_entry(traddr="10.0.0.1\udc80", subnqn="nqn.x\x07")
    text = render_discovery_text(None, [e])
    assert " Transport address:    10.0.0.1?\n" in text
    assert " Sub NQN:              nqn.x?\n" in text


def test_json_keys_and_values_parse_back():
    entries = [
        journal_entry(eflags=0x3),
        journal_entry(trtype=1, adrfam=2, subtype=3, treq=0x2,
                      tsas=rdma_tsas(1, 4, 1, 7)),
        journal_entry(trtype=9, adrfam=0x33, subtype=8, treq=0x3, eflags=0x10),
    ]
    doc = json.loads(json.dumps(discovery_to_json(DiscoveryHeader(9, 3, 0), entries)))
    assert (doc["genctr"], doc["numrec"], doc["recfmt"]) == (9, 3, 0)
    tcp, rdma, odd = doc["records"]
    assert tcp == {
        "trtype": "tcp", "adrfam": "ipv4", "subtype": "nvme subsystem",
        "treq": "not specified, sq flow control disable supported", "portid": 1,
        "cntlid": 65535, "asqsz": 32,
        "eflags": "explicit discovery connections, duplicate discovery information",
        "trsvcid": "4420", "subnqn": "nvme-test-target", "traddr": "10.0.0.118",
        "sectype": "none",
    }
    assert rdma["trtype"] == "rdma" and rdma["adrfam"] == "ipv6"
    assert rdma["subtype"] == "current discovery subsystem" and rdma["treq"] == "not required"
    assert (rdma["rdma_qptype"], rdma["rdma_prtype"], rdma["rdma_cms"], rdma["rdma_pkey"]) == (
        "connected", "roce-v2", "rdma-cm", 7)
    assert "sectype" not in rdma
    # Values nvme-cli cannot name stay numbers, and no TSAS field is guessed.
    assert (odd["trtype"], odd["adrfam"], odd["subtype"], odd["treq"], odd["eflags"]) == (
        9, 0x33, 8, 3, 0x10)
    assert "sectype" not in odd and "rdma_qptype" not in odd


def test_treq_and_eflags_phrases():
    assert treq_to_json(0) == "not specified"
    assert treq_to_json(1) == "required"
    assert treq_to_json(6) == "not required, sq flow control disable supported"
    assert treq_to_json(0x8) == 0x8
    assert eflags_to_json(0) == "none"
    assert eflags_to_json(0x4) == "no cdc connectivity"
    assert eflags_to_json(0x7) == (
        "explicit discovery connections, duplicate discovery information, no cdc connectivity"
    )
