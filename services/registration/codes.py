"""Code lists the registration rules refer to (domain reference, section 3).

Kept as data, in one place, so a list can be corrected without touching the rules.
"""

from typing import Final

from services.registration.regions import kota_pasuruan

KOTA_PASURUAN: Final = "35.75"
"""Kemendagri code of Kota Pasuruan (the city). [firm]"""

KABUPATEN_PASURUAN: Final = "35.14"
"""Kemendagri code of Kabupaten Pasuruan: a different government, not covered. [firm]"""

KOTA_PASURUAN_KECAMATAN: Final[dict[str, str]] = kota_pasuruan().kecamatan
"""The four kecamatan of Kota Pasuruan, from the official region list. [firm]"""

OCCUPATIONS: Final[dict[str, str]] = {
    "pedagang": "Pedagang (market trader)",
    "pemilik_warung_kopi": "Pemilik warung kopi (coffee-stall owner)",
    "marbot_masjid": "Marbot masjid (mosque caretaker)",
    "tukang_kayu": "Tukang kayu (carpenter)",
    "buruh_tani": "Buruh tani (farm labourer)",
    "buruh_tembakau": "Buruh tembakau (tobacco labourer)",
    "nelayan": "Nelayan (fisher)",
    "pengemudi_becak": "Pengemudi becak (becak driver)",
    "pengemudi_ojek": "Pengemudi ojek (ojek driver)",
    "lainnya": "Lainnya (other)",
}
"""Occupation codes of the programme's typical participants (domain reference, 1)."""

MINIMUM_DECLARED_INCOME: Final = 1_000_000
"""Lowest declared monthly income for BPU participants, Rupiah. [soft]"""

MAXIMUM_DECLARED_INCOME: Final = 20_700_000
"""Highest declared monthly income bracket for BPU participants, Rupiah. [soft]"""
