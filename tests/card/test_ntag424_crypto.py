"""hcard.ntag424 against NXP's published examples, byte for byte, the reader's side and the card's.

Where the vectors come from:
- AN10922 "Symmetric key diversifications", §2.2.1 (AES-128 example).
- AN12196 "NTAG 424 DNA and NTAG 424 DNA TagTamper features and hints": §3.3-3.4 (SDM
  session keys, the SUN examples: Tables 1, 2 and 4 and the example with encrypted file
  data), the personalisation and secure messaging examples (Tables 7-28 in the numbering of
  Rev. 2.0; Rev. 1.x has them in §5-7, e.g. §6.6 for the first authentication) and the
  asymmetric originality check (§8.2 in Rev. 1.x). Each constant below names its table.
  The PDF's text was not at hand when this file was written: the bytes come from public
  transcriptions of the note in the test suites of independent open-source NTAG 424 projects,
  which agree with one another. A wrong digit cannot hide: each value is the AES or CMAC of
  the others (the originality example is an ECDSA signature under NXP's key), so one typo
  breaks its whole table here.

A round trip between our reader and our card side would not catch a mistake both share (a
wrong IV label, a MAC over the wrong counter); the published bytes do, on each side apart.
"""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from hcard import ntag424
from hcard.errors import Code, HCardError
from hcard.ntag424 import (
    AccessRights,
    CommMode,
    FileSettings,
    Ins,
    SdmOption,
    SdmSettings,
    SecureChannel,
    SessionKeys,
)

H = bytes.fromhex
ZERO_KEY = bytes(16)

# --- AN10922 §2.2.1: AES-128 key diversification --------------------------------------
AN10922_MASTER_KEY = H("00112233445566778899AABBCCDDEEFF")
AN10922_UID = H("04782E21801D80")
AN10922_AID = H("3042F5")
AN10922_SYSTEM_IDENTIFIER = b"NXP Abu"  # 4E585020416275
AN10922_DIVERSIFIED_KEY = H("A8DD63A3B89D54B37CA802473FDA9175")

# --- AN12196 Table 14: AuthenticateEV2First with key 0 (factory, all zero) -------------
T14_RND_A = H("13C5DB8A5930439FC3DEF9A4C675360F")
T14_RND_B = H("B9E2FC789B64BF237CCCAA20EC7E6E48")
T14_COMMAND_1 = H("9071000002000000")
T14_CHALLENGE = H("A04C124213C186F22399D33AC2A30215")  # answer data, then 91 AF
T14_COMMAND_2 = H("90AF00002035C3E05A752E0144BAC0DE51C1F22C56B34408A23D8AEA266CAB947EA8E0118D00")
T14_CONFIRMATION = H(
    "3FA64DB5446D1F34CD6EA311167F5E4985B89690C04A05F17FA7AB2F08120663"
)  # then 91 00
T14_TI = H("9D00C4DF")
T14_SES_AUTH_ENC = H("1309C877509E5A215007FF0ED19CA564")
T14_SES_AUTH_MAC = H("4C6626F5E72EA694202139295C7A7FC7")

# --- AN12196 Table 17: WriteData in CommMode.Full, NDEF file, CmdCtr 0 (Table 14's session)
T17_HEADER = H("02000000800000")  # file 02, offset 0, length 0x80
T17_DATA = (
    H("0051D1014D550463686F6F73652E75726C2E636F6D2F6E7461673432343F653D")
    + b"0" * 32
    + b"&c="
    + b"0" * 16
).ljust(0x80, b"\x00")  # https://choose.url.com/ntag424?e=00…&c=00…, zero-padded
T17_COMMAND = H(
    "908D00009F02000000800000"
    "421C73A27D827658AF481FDFF20A5025B559D0E3AA21E58D347F343CFFC768BFE596C706BC00F2176781D4B0242642"
    "A0FF5A42C461AAF894D9A1284B8C76BCFA658ACD40555D362E08DB15CF421B51283F9064BCBE20E96CAE545B40"
    "7C9D651A3315B27373772E5DA2367D2064AE054AF996C6F1F669170FA88CE8C4E3A4A7BBBEF0FD971FF532C3A802"
    "AF745660F2B4"
    "D1D9A8499661EBF3"
    "00"
)
T17_ANSWER = H("FC222E5F7A542452")  # then 91 00

# --- AN12196 Table 18: ChangeFileSettings of the NDEF file for SUN, CmdCtr 1 ------------
T18_DATA = H("4000E0C1F121200000430000430000")
T18_COMMAND = H("905F0000190261B6D97903566E84C3AE5274467E89EAD799B7C1A0EF7A0400")
T18_ANSWER = H("57BFF87B1241E93D")

# --- AN12196 Table 19: AuthenticateEV2First with key 3 ---------------------------------
T19_RND_A = H("B98F4C50CF1C2E084FD150E33992B048")
T19_CHALLENGE = H("B875CEB0E66A6C5CD00898DC371F92D1")
T19_COMMAND_2 = H("90AF000020FF0306E47DFBC50087C4D8A78E88E62DE1E8BE457AA477C707E2F0874916A8B100")
T19_CONFIRMATION = H("0CC9A8094A8EEA683ECAAC5C7BF20584206D0608D477110FC6B3D5D3F65C3A6A")
T19_TI = H("7614281A")
T19_SES_AUTH_ENC = H("7A93D6571E4B180FCA6AC90C9A7488D4")
T19_SES_AUTH_MAC = H("FC4AF159B62E549B5812394CAB1918CC")

# --- AN12196 Table 21: WriteData in CommMode.Full, proprietary file, CmdCtr 0 (Table 19) -
T21_COMMAND = H("908D00001F030000000A00006B5E6804909962FC4E3FF5522CF0F8436C0C53315B9C73AA00")
T21_ANSWER = H("C26D236E4A7C046D")

# --- AN12196 Table 23: session keys of AuthenticateEV2NonFirst (key 0), TI of Table 19 ---
T23_RND_A = H("60BE759EDA560250AC57CDDC11743CF6")
T23_RND_B = H("6924E8D09722659A2E7DEC68E66312B8")
T23_KEYS = SessionKeys(H("4CF3CB41A22583A61E89B158D252FC53"), H("5529860B2FC5FB6154B7F28361D30BF9"))

# --- AN12196 Table 25: ChangeKey of key 2 (old key zero, version 01), CmdCtr 2 ----------
T25_NEW_KEY = H("F3847D627727ED3BC9C4CC050489B966")
T25_CRC = H("789DFADC")
T25_COMMAND = H(
    "90C4000029022CF362B7BF4311FF3BE1DAA295E8C68DE09050560D19B9E16C2393AE9CD1FAC75D0CE20BCD1D06E600"
)
T25_ANSWER = H("203BB55D1089D587")

# --- AN12196 Table 26: ChangeKey of key 0 (the session's key, version 01), CmdCtr 3 -----
T26_NEW_KEY = H("5004BF991F408672B1EF00F08F9E8647")
T26_FULL_CMAC = H("B7A60161F202EC3489BD4BEDEF64BB32")
T26_COMMAND = H(
    "90C400002900C0EB4DEEFEDDF0B513A03A95A75491818580503190D4D05053FF75668A01D6FDA6610234BDED643200"
)

# --- AN12196 Table 7: GetFileSettings in CommMode.MAC (only the MAC key is given) -------
T7_KEYS = SessionKeys(ZERO_KEY, H("8248134A386E86EB7FAF54A52E536CB6"))  # enc unused in MAC
T7_TI = H("7A21085E")
T7_COMMAND = H("90F5000009026597A457C8CD442C00")
T7_SETTINGS = H("0040EEEE000100D1FE001F00004400004400002000006A0000")
T7_ANSWER_MAC = H("2A474282E7A47986")

# --- AN12196 Table 28: GetCardUID in CommMode.Full (session keys given) -----------------
T28_KEYS = SessionKeys(H("2B4D963C014DC36F24F69A50A394F875"), H("379D32130CE61705DD5FD8C36B95D764"))
T28_TI = H("DF055522")
T28_COMMAND = H("90510000088E2C155ADDA99BE300")
T28_ANSWER = H("70756055688505B52A5E26E59E329CD6595F672298EA41B7")
T28_UID = H("04958CAA5C5E80")

# --- AN12196 §3.3 Table 1: SDM session keys --------------------------------------------
T1_FILE_READ_KEY = H("5ACE7E50AB65D5D51FD5BF5A16B8205B")
T1_UID = H("04C767F2066180")
T1_READ_COUNTER = 1  # 01 00 00
T1_SES_SDM_ENC = H("66DA61797E23DECA5D8ECA13BBADF7A9")
T1_SES_SDM_MAC = H("3A3E8110E05311F7A3FCF0D969BF2B48")

# --- AN12196 §3.4 Tables 2-4: SUN link https://ntag.nxp.com/424?e=…&c=…, zero keys -----
SUN_PICC = "EF963FF7828658A599F3041510671E88"
SUN_PICC_PLAIN = H("C704DE5F1EACC0403D0000DA5CF60941")  # tag, UID, counter 61, padding
SUN_UID = H("04DE5F1EACC040")
SUN_READ_COUNTER = 61
SUN_SES_SDM_MAC = H("3FB5F6E3A807A03D5E3570ACE393776F")
SUN_MAC = "94EED9EE65337086"

# --- AN12196 §3.4: SUN with encrypted file data; SDMMAC over "<enc>&cmac=", zero keys ----
SUN2_PICC = "FD91EC264309878BE6345CBE53BADF40"
SUN2_MAC_INPUT = b"CEE9A53E3E463EF1F459635736738962&cmac="
SUN2_MAC = "ECC1E7F6C6C73BF6"
SUN2_UID = H("04958CAA5C5E80")
SUN2_READ_COUNTER = 8

# --- AN12196 §8.2: asymmetric originality check of an NTAG 424 DNA ---------------------
ORIGINALITY_UID = H("04518DFAA96180")
ORIGINALITY_SIGNATURE = H(
    "D1940D17CFEDA4BFF80359AB975F9F6514313E8F90C1D3CAAF5941AD"
    "744A1CDF9A83F883CAFE0FE95D1939B1B7E47113993324473B785D21"
)


def channel(keys: SessionKeys, ti: bytes, counter: int, key_number: int = 0) -> SecureChannel:
    return SecureChannel(keys, ti, key_number, counter)


SESSION_A = SessionKeys(T14_SES_AUTH_ENC, T14_SES_AUTH_MAC)
SESSION_B = SessionKeys(T19_SES_AUTH_ENC, T19_SES_AUTH_MAC)


# --- key diversification ---------------------------------------------------------------


def test_an10922_aes128_example():
    m = AN10922_UID + AN10922_AID + AN10922_SYSTEM_IDENTIFIER
    assert ntag424.diversify_aes128(AN10922_MASTER_KEY, m) == AN10922_DIVERSIFIED_KEY


def _an10922_as_written(master_key: bytes, m: bytes) -> bytes:
    """AN10922 §2.2 step by step, independent of any CMAC library: subkeys from E(K, 0),
    01 ‖ M padded with 80 00 … to 32 bytes, last block XOR K2 (K1 if no padding), CBC."""

    def aes(block: bytes) -> bytes:
        encryptor = Cipher(algorithms.AES(master_key), modes.ECB()).encryptor()
        return encryptor.update(block) + encryptor.finalize()

    def double(block: bytes) -> bytes:
        shifted = (int.from_bytes(block, "big") << 1) & (2**128 - 1)
        return (shifted ^ (0x87 if block[0] & 0x80 else 0)).to_bytes(16, "big")

    k1 = double(aes(bytes(16)))
    k2 = double(k1)
    d = b"\x01" + m
    subkey = k1 if len(d) == 32 else k2
    d = d if len(d) == 32 else (d + b"\x80").ljust(32, b"\x00")
    first = aes(d[:16])
    last = bytes(a ^ b ^ c for a, b, c in zip(first, d[16:], subkey, strict=True))
    return aes(last)


@pytest.mark.parametrize("length", range(16, 32))
def test_diversification_is_an10922_as_written_for_every_allowed_length(length):
    master_key, m = os.urandom(16), os.urandom(length)
    assert ntag424.diversify_aes128(master_key, m) == _an10922_as_written(master_key, m)


def test_an10922_as_written_gives_the_notes_example():
    """The independent recipe above is itself right: it gives the note's key."""
    m = AN10922_UID + AN10922_AID + AN10922_SYSTEM_IDENTIFIER
    assert _an10922_as_written(AN10922_MASTER_KEY, m) == AN10922_DIVERSIFIED_KEY


@pytest.mark.parametrize("length", [0, 15, 32])
def test_diversification_refuses_inputs_where_cmac_would_differ(length):
    with pytest.raises(ValueError, match="16 to 31"):
        ntag424.diversify_aes128(AN10922_MASTER_KEY, bytes(length))


def test_card_keys_differ_per_card_and_per_key_and_site_keys_ignore_the_uid():
    master = os.urandom(16)
    uid, other_uid = H("04010203040506"), H("04010203040507")
    keys = {ntag424.card_key(master, u, n) for u in (uid, other_uid) for n in range(5)}
    assert len(keys) == 10
    assert ntag424.site_key(master, 2) != ntag424.site_key(master, 3)
    m = uid + ntag424.SYSTEM_IDENTIFIER + b"\x01"
    assert ntag424.card_key(master, uid, 1) == ntag424.diversify_aes128(master, m)
    with pytest.raises(ValueError, match="7 bytes"):
        ntag424.card_key(master, uid[:4], 1)


# --- AuthenticateEV2First --------------------------------------------------------------


def test_session_keys_from_rnd_a_and_rnd_b():
    keys = ntag424.session_keys(ZERO_KEY, T14_RND_A, T14_RND_B)
    assert keys == SessionKeys(T14_SES_AUTH_ENC, T14_SES_AUTH_MAC)
    assert ntag424.session_keys(ZERO_KEY, T23_RND_A, T23_RND_B) == T23_KEYS


def test_reader_side_of_the_first_authentication():
    assert ntag424.authenticate_command(0) == T14_COMMAND_1
    command, rnd_b = ntag424.authenticate_proof(ZERO_KEY, T14_RND_A, T14_CHALLENGE)
    assert (command, rnd_b) == (T14_COMMAND_2, T14_RND_B)
    session = ntag424.authenticate_finish(ZERO_KEY, 0, T14_RND_A, rnd_b, T14_CONFIRMATION)
    assert session == SecureChannel(SESSION_A, T14_TI, 0, 0)


def test_card_side_of_the_first_authentication():
    assert ntag424.card_challenge(ZERO_KEY, T14_RND_B) == T14_CHALLENGE
    proof = T14_COMMAND_2[5:-1]
    assert ntag424.card_check_proof(ZERO_KEY, T14_RND_B, proof) == T14_RND_A
    assert ntag424.card_confirmation(ZERO_KEY, T14_TI, T14_RND_A) == T14_CONFIRMATION


def test_reader_side_of_the_authentication_with_key_3():
    command, rnd_b = ntag424.authenticate_proof(ZERO_KEY, T19_RND_A, T19_CHALLENGE)
    assert command == T19_COMMAND_2
    session = ntag424.authenticate_finish(ZERO_KEY, 3, T19_RND_A, rnd_b, T19_CONFIRMATION)
    assert session == SecureChannel(SESSION_B, T19_TI, 3, 0)


def test_a_confirmation_for_another_rnd_a_is_a_replay():
    other_rnd_a = bytes(16)
    with pytest.raises(HCardError) as caught:
        ntag424.authenticate_finish(ZERO_KEY, 0, other_rnd_a, T14_RND_B, T14_CONFIRMATION)
    assert caught.value.code is Code.CARD_AUTH_REPLAYED


def test_the_card_refuses_a_proof_under_another_key_or_for_another_rnd_b():
    proof = T14_COMMAND_2[5:-1]
    assert ntag424.card_check_proof(os.urandom(16), T14_RND_B, proof) is None
    assert ntag424.card_check_proof(ZERO_KEY, os.urandom(16), proof) is None
    assert ntag424.card_check_proof(ZERO_KEY, T14_RND_B, proof[:16]) is None


# --- secure messaging ------------------------------------------------------------------


def test_truncated_mac_is_the_odd_bytes():
    assert ntag424.truncate_mac(T26_FULL_CMAC) == H("A6610234BDED6432")


def test_mac_mode_get_file_settings_both_sides():
    reader, card = channel(T7_KEYS, T7_TI, 0), channel(T7_KEYS, T7_TI, 0)
    assert reader.wrap(Ins.GET_FILE_SETTINGS, b"\x02", b"", CommMode.MAC) == T7_COMMAND
    assert card.open(Ins.GET_FILE_SETTINGS, b"\x02", T7_COMMAND[6:-1], CommMode.MAC) == b""
    assert card.seal(T7_SETTINGS, CommMode.MAC) == T7_SETTINGS + T7_ANSWER_MAC
    assert reader.unwrap(T7_SETTINGS + T7_ANSWER_MAC, CommMode.MAC) == T7_SETTINGS
    assert reader.cmd_counter == card.cmd_counter == 1


def test_full_mode_write_of_the_ndef_file_both_sides():
    reader, card = channel(SESSION_A, T14_TI, 0), channel(SESSION_A, T14_TI, 0)
    assert reader.wrap(Ins.WRITE_DATA, T17_HEADER, T17_DATA, CommMode.FULL) == T17_COMMAND
    body = T17_COMMAND[5 + len(T17_HEADER) : -1]
    assert card.open(Ins.WRITE_DATA, T17_HEADER, body, CommMode.FULL) == T17_DATA
    assert card.seal(b"", CommMode.FULL) == T17_ANSWER
    assert reader.unwrap(T17_ANSWER, CommMode.FULL) == b""


def test_change_file_settings_for_sun_both_sides():
    settings = FileSettings(
        CommMode.PLAIN,
        AccessRights(read=0xE, write=0x0, read_write=0x0, change=0x0),
        256,
        SdmSettings(
            SdmOption.UID | SdmOption.READ_COUNTER | SdmOption.ASCII,
            meta_read=2,
            file_read=1,
            counter_read=1,
            picc_data_offset=0x20,
            mac_input_offset=0x43,
            mac_offset=0x43,
        ),
    )
    assert settings.change_data() == T18_DATA
    assert FileSettings.from_change_data(T18_DATA, 256) == settings
    reader, card = channel(SESSION_A, T14_TI, 1), channel(SESSION_A, T14_TI, 1)
    command = reader.wrap(Ins.CHANGE_FILE_SETTINGS, b"\x02", T18_DATA, CommMode.FULL)
    assert command == T18_COMMAND
    assert card.open(Ins.CHANGE_FILE_SETTINGS, b"\x02", command[6:-1], CommMode.FULL) == T18_DATA
    assert card.seal(b"", CommMode.FULL) == T18_ANSWER


def test_full_mode_write_of_the_proprietary_file_both_sides():
    header, data = H("03000000" + "0A0000"), H("0102030405060708090A")
    reader, card = channel(SESSION_B, T19_TI, 0, 3), channel(SESSION_B, T19_TI, 0, 3)
    assert reader.wrap(Ins.WRITE_DATA, header, data, CommMode.FULL) == T21_COMMAND
    assert card.open(Ins.WRITE_DATA, header, T21_COMMAND[12:-1], CommMode.FULL) == data
    assert card.seal(b"", CommMode.FULL) == T21_ANSWER


def test_full_mode_answer_get_card_uid_both_sides():
    reader, card = channel(T28_KEYS, T28_TI, 0), channel(T28_KEYS, T28_TI, 0)
    assert reader.wrap(0x51, b"", b"", CommMode.FULL) == T28_COMMAND
    assert card.open(0x51, b"", T28_COMMAND[5:-1], CommMode.FULL) == b""
    assert card.seal(T28_UID, CommMode.FULL) == T28_ANSWER
    assert reader.unwrap(T28_ANSWER, CommMode.FULL) == T28_UID


def test_change_key_of_another_key_both_sides():
    data = ntag424.change_key_data(2, T25_NEW_KEY, 1, ZERO_KEY, auth_key_number=0)
    assert data == T25_NEW_KEY + b"\x01" + T25_CRC
    assert ntag424.crc32_nk(T25_NEW_KEY) == T25_CRC
    reader, card = channel(T23_KEYS, T19_TI, 2), channel(T23_KEYS, T19_TI, 2)
    assert reader.wrap(Ins.CHANGE_KEY, b"\x02", data, CommMode.FULL) == T25_COMMAND
    opened = card.open(Ins.CHANGE_KEY, b"\x02", T25_COMMAND[6:-1], CommMode.FULL)
    assert opened == data
    assert ntag424.card_new_key(opened, 2, 0, ZERO_KEY) == (T25_NEW_KEY, 1)
    assert ntag424.card_new_key(opened, 2, 0, os.urandom(16)) is None  # wrong old key
    assert card.seal(b"", CommMode.MAC) == T25_ANSWER
    assert reader.unwrap(T25_ANSWER, CommMode.MAC) == b""


def test_change_key_of_the_sessions_own_key_both_sides():
    data = ntag424.change_key_data(0, T26_NEW_KEY, 1, ZERO_KEY, auth_key_number=0)
    assert data == T26_NEW_KEY + b"\x01"
    reader, card = channel(T23_KEYS, T19_TI, 3), channel(T23_KEYS, T19_TI, 3)
    assert reader.wrap(Ins.CHANGE_KEY, b"\x00", data, CommMode.FULL) == T26_COMMAND
    opened = card.open(Ins.CHANGE_KEY, b"\x00", T26_COMMAND[6:-1], CommMode.FULL)
    assert ntag424.card_new_key(opened, 0, 0, ZERO_KEY) == (T26_NEW_KEY, 1)


def test_a_changed_byte_anywhere_is_refused():
    reader, card = channel(SESSION_A, T14_TI, 0), channel(SESSION_A, T14_TI, 0)
    body = bytearray(T17_COMMAND[12:-1])
    body[3] ^= 1
    assert card.open(Ins.WRITE_DATA, T17_HEADER, bytes(body), CommMode.FULL) is None
    assert card.open(Ins.WRITE_DATA, H("02000000810000"), T17_COMMAND[12:-1], CommMode.FULL) is None
    answer = bytearray(T17_ANSWER)
    answer[-1] ^= 1
    with pytest.raises(HCardError) as caught:
        reader.unwrap(bytes(answer), CommMode.FULL)
    assert caught.value.code is Code.CARD_MAC_INVALID
    assert reader.cmd_counter == 0
    with pytest.raises(HCardError):
        channel(SESSION_A, T14_TI, 1).unwrap(T17_ANSWER, CommMode.FULL)  # a replayed answer


def test_padding_always_adds_and_is_removed_exactly():
    for length in range(34):
        data = os.urandom(length)
        padded = ntag424.pad(data)
        assert len(padded) % 16 == 0
        assert len(padded) > length
        assert ntag424.unpad(padded) == data
    assert ntag424.unpad(bytes(16)) is None
    assert ntag424.unpad(b"\x80" + bytes(16)) is None


# --- file settings ---------------------------------------------------------------------


def test_get_file_settings_answer_decodes_and_encodes_back():
    settings = FileSettings.from_answer(T7_SETTINGS)
    assert settings.comm_mode is CommMode.PLAIN
    assert settings.access == AccessRights(0xE, 0xE, 0xE, 0xE)
    assert settings.size == 256
    assert settings.sdm == SdmSettings(
        SdmOption.UID | SdmOption.READ_COUNTER | SdmOption.ENC_FILE_DATA | SdmOption.ASCII,
        meta_read=0,
        file_read=0,
        counter_read=0xE,
        picc_data_offset=0x1F,
        mac_input_offset=0x44,
        enc_offset=0x44,
        enc_length=0x20,
        mac_offset=0x6A,
    )
    assert settings.answer_data() == T7_SETTINGS


@pytest.mark.parametrize(
    "data",
    [H("40"), H("4000E0C1F121200000430000"), H("0000E000"), H("0200E0"), H("8000E0")],
    ids=["short", "offset missing", "too long", "comm mode 10", "unknown option bit"],
)
def test_malformed_file_settings_are_refused(data):
    with pytest.raises(ValueError, match="settings"):
        FileSettings.from_change_data(data, 256)


# --- SUN -------------------------------------------------------------------------------


def test_sdm_session_keys():
    keys = ntag424.sdm_session_keys(T1_FILE_READ_KEY, T1_UID, T1_READ_COUNTER)
    assert keys == SessionKeys(T1_SES_SDM_ENC, T1_SES_SDM_MAC)


def test_sun_link_server_side():
    picc = ntag424.decrypt_picc_data(ZERO_KEY, H(SUN_PICC))
    assert picc == ntag424.PiccData(SUN_UID, SUN_READ_COUNTER)
    assert ntag424.sdm_session_keys(ZERO_KEY, SUN_UID, SUN_READ_COUNTER).mac == SUN_SES_SDM_MAC
    assert ntag424.verify_sun(SUN_PICC, SUN_MAC, ZERO_KEY, lambda _uid: ZERO_KEY) == picc
    assert ntag424.verify_sun(SUN_PICC.lower(), SUN_MAC.lower(), ZERO_KEY, lambda _: ZERO_KEY)


def test_sun_link_card_side():
    padding = SUN_PICC_PLAIN[11:]
    encrypted = ntag424.encrypt_picc_data(ZERO_KEY, SUN_UID, SUN_READ_COUNTER, padding)
    assert ntag424.mirror_ascii(encrypted) == SUN_PICC.encode()
    mac = ntag424.sdm_mac(ZERO_KEY, SUN_UID, SUN_READ_COUNTER)
    assert ntag424.mirror_ascii(mac) == SUN_MAC.encode()


def test_sun_mac_over_a_given_input():
    picc = ntag424.verify_sun(
        SUN2_PICC, SUN2_MAC, ZERO_KEY, lambda _: ZERO_KEY, mac_input=SUN2_MAC_INPUT
    )
    assert picc == ntag424.PiccData(SUN2_UID, SUN2_READ_COUNTER)
    with pytest.raises(HCardError) as caught:
        ntag424.verify_sun(SUN2_PICC, SUN2_MAC, ZERO_KEY, lambda _: ZERO_KEY)
    assert caught.value.code is Code.SUN_INVALID


@pytest.mark.parametrize(
    ("picc", "mac", "meta_key", "file_key"),
    [
        (SUN_PICC, "94EED9EE65337087", ZERO_KEY, ZERO_KEY),
        (SUN_PICC, SUN_MAC, H("01" * 16), ZERO_KEY),
        (SUN_PICC, SUN_MAC, ZERO_KEY, H("01" * 16)),
        (SUN2_PICC, SUN_MAC, ZERO_KEY, ZERO_KEY),
        ("EF963FF7828658A599F3041510671E", SUN_MAC, ZERO_KEY, ZERO_KEY),
        (SUN_PICC, "94EED9EE653370", ZERO_KEY, ZERO_KEY),
        ("not hex at all", SUN_MAC, ZERO_KEY, ZERO_KEY),
    ],
    ids=["mac", "meta key", "file key", "other tap", "short picc", "short mac", "not hex"],
)
def test_a_sun_link_that_does_not_verify_is_invalid(picc, mac, meta_key, file_key):
    with pytest.raises(HCardError) as caught:
        ntag424.verify_sun(picc, mac, meta_key, lambda _uid: file_key)
    assert caught.value.code is Code.SUN_INVALID


def test_an_old_sun_link_is_stale():
    assert ntag424.verify_sun(SUN_PICC, SUN_MAC, ZERO_KEY, lambda _: ZERO_KEY, last_counter=60)
    for last in (61, 62):
        with pytest.raises(HCardError) as caught:
            ntag424.verify_sun(SUN_PICC, SUN_MAC, ZERO_KEY, lambda _: ZERO_KEY, last_counter=last)
        assert caught.value.code is Code.SUN_STALE
        assert caught.value.details == {"read_counter": 61, "last_seen": last}


def test_a_tap_counter_must_go_up():
    ntag424.require_newer_counter(5, None)
    ntag424.require_newer_counter(5, 4)
    for last in (5, 6):
        with pytest.raises(HCardError) as caught:
            ntag424.require_newer_counter(5, last)
        assert caught.value.code is Code.CARD_COUNTER_BACKWARDS


# --- originality signature -------------------------------------------------------------


def test_nxp_example_signature_verifies_under_nxps_key():
    assert ntag424.originality_ok(ORIGINALITY_UID, ORIGINALITY_SIGNATURE)


def test_any_change_breaks_the_originality_signature():
    flipped = ORIGINALITY_SIGNATURE[:-1] + bytes([ORIGINALITY_SIGNATURE[-1] ^ 1])
    assert not ntag424.originality_ok(ORIGINALITY_UID, flipped)
    assert not ntag424.originality_ok(H("04518DFAA96181"), ORIGINALITY_SIGNATURE)
    assert not ntag424.originality_ok(ORIGINALITY_UID, ORIGINALITY_SIGNATURE[:-1])
    assert not ntag424.originality_ok(ORIGINALITY_UID, bytes(56))


def test_a_signature_by_another_key_verifies_only_under_that_key():
    key = ec.generate_private_key(ec.SECP224R1())
    public_hex = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint).hex()
    signature = ntag424.originality_signature(ORIGINALITY_UID, key)
    assert len(signature) == 56
    assert ntag424.originality_ok(ORIGINALITY_UID, signature, public_hex)
    assert not ntag424.originality_ok(ORIGINALITY_UID, signature)
