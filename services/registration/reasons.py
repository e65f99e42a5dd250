"""Every reason code registration answers with, and what it means in English and in
Indonesian. A reason's own message says more (which kelurahan were meant, the age found);
this catalogue is the code's meaning, for reports that clerks read (the import report
gives both languages) and for the README's table, which a test keeps in step."""

from __future__ import annotations

from typing import Final, NamedTuple


class Meaning(NamedTuple):
    english: str
    indonesian: str


REASONS: Final[dict[str, Meaning]] = {
    "NIK_FORMAT": Meaning("The NIK is not 16 digits.", "NIK harus 16 digit angka."),
    "NIK_REGION": Meaning(
        "The NIK's region codes (digits 1-6) contain 00.",
        "Kode wilayah NIK (digit 1-6) tidak boleh 00.",
    ),
    "NIK_BIRTHDATE_INVALID": Meaning(
        "NIK digits 7-12 are not a date.", "Digit 7-12 NIK bukan tanggal yang sah."
    ),
    "NIK_BIRTHDATE_MISMATCH": Meaning(
        "The birth date does not match the date in the NIK.",
        "Tanggal lahir tidak sesuai dengan tanggal dalam NIK.",
    ),
    "NIK_GENDER_MISMATCH": Meaning(
        "The gender does not match the NIK (women's NIKs add 40 to the day).",
        "Jenis kelamin tidak sesuai dengan NIK (NIK perempuan: tanggal lahir ditambah 40).",
    ),
    "NIK_SERIAL": Meaning(
        "The NIK's serial (last 4 digits) is 0000.", "Nomor urut NIK (4 digit terakhir) 0000."
    ),
    "DOMICILE_KABUPATEN_PASURUAN": Meaning(
        "The domicile is in Kabupaten Pasuruan, a different government.",
        "Domisili di Kabupaten Pasuruan, bukan Kota Pasuruan.",
    ),
    "DOMICILE_OUTSIDE_CITY": Meaning(
        "The kecamatan is not one of Kota Pasuruan's.",
        "Kecamatan bukan kecamatan di Kota Pasuruan.",
    ),
    "DOMICILE_KELURAHAN_UNKNOWN": Meaning(
        "The kelurahan is not one of the kecamatan's (the closest are named).",
        "Kelurahan tidak dikenal di kecamatan tersebut (disebutkan yang paling mirip).",
    ),
    "DOMICILE_KELURAHAN_MISMATCH": Meaning(
        "The kelurahan belongs to another kecamatan of the city.",
        "Kelurahan tersebut berada di kecamatan lain di Kota Pasuruan.",
    ),
    "AGE_OUT_OF_RANGE": Meaning(
        "The age at enrolment is outside 15 to 64.", "Usia saat pendaftaran di luar 15-64 tahun."
    ),
    "PHONE_INVALID": Meaning(
        "Not an Indonesian mobile number (08.., +628..).",
        "Bukan nomor ponsel Indonesia (08.., +628..).",
    ),
    "EMAIL_INVALID": Meaning("The email address is not valid.", "Alamat email tidak sah."),
    "OCCUPATION_UNKNOWN": Meaning("Unknown occupation code.", "Kode pekerjaan tidak dikenal."),
    "INCOME_BELOW_MINIMUM": Meaning(
        "Declared income below Rp 1,000,000.", "Penghasilan di bawah Rp 1.000.000."
    ),
    "INCOME_ABOVE_MAXIMUM": Meaning(
        "Declared income above Rp 20,700,000.", "Penghasilan di atas Rp 20.700.000."
    ),
    "INCOME_INVALID": Meaning(
        "The declared income is not a whole number of Rupiah.",
        "Penghasilan harus bilangan bulat Rupiah.",
    ),
    "NAME_INVALID": Meaning(
        "The name is empty or longer than 200 characters.",
        "Nama kosong atau lebih dari 200 karakter.",
    ),
    "TEXT_INVALID": Meaning(
        "The text holds control or invisible characters.",
        "Teks mengandung karakter kontrol atau tak terlihat.",
    ),
    "DUPLICATE_NIK": Meaning(
        "This NIK is already enrolled (its holder is named only to a key that may read).",
        "NIK ini sudah terdaftar (pemegangnya disebut hanya untuk kunci dengan izin baca).",
    ),
    "BIRTH_DATE_INVALID": Meaning(
        "The birth date is missing or not a date (YYYY-MM-DD).",
        "Tanggal lahir kosong atau bukan tanggal (YYYY-MM-DD).",
    ),
    "GENDER_INVALID": Meaning("The gender is not M or F.", "Jenis kelamin harus M atau F."),
    "ADDRESS_INVALID": Meaning(
        "The address is empty or longer than 300 characters.",
        "Alamat kosong atau lebih dari 300 karakter.",
    ),
    "DOMICILE_KELURAHAN_INVALID": Meaning(
        "The kelurahan is empty or longer than 100 characters.",
        "Kelurahan kosong atau lebih dari 100 karakter.",
    ),
    "DOMICILE_KECAMATAN_INVALID": Meaning(
        "The kecamatan code is empty or too long.", "Kode kecamatan kosong atau terlalu panjang."
    ),
    "LANGUAGE_UNKNOWN": Meaning(
        "The preferred language is not id or en.", "Bahasa pilihan harus id atau en."
    ),
    "FIELD_UNKNOWN": Meaning("A field the schema does not know.", "Kolom tidak dikenal."),
    "WORKER_INVALID": Meaning("The worker is not a JSON object.", "Data pekerja bukan objek JSON."),
    "EFFECTIVE_DATE_BEFORE_ENROLMENT": Meaning(
        "A deregistration cannot take effect before the membership began.",
        "Tanggal berlaku penghapusan tidak boleh sebelum tanggal pendaftaran.",
    ),
    "EFFECTIVE_DATE_IN_FUTURE": Meaning(
        "A deregistration is recorded once it has happened, not ahead.",
        "Penghapusan dicatat setelah terjadi, bukan sebelumnya.",
    ),
    "IDEMPOTENCY_CONFLICT": Meaning(
        "The request id was already used for a different request.",
        "ID permintaan sudah dipakai untuk permintaan lain.",
    ),
}
"""Every code, in the README's order."""


def meaning(code: str) -> Meaning:
    """A code's meaning; an unknown code (one this catalogue lacks) says so."""
    return REASONS.get(code, Meaning(f"Reason {code}.", f"Alasan {code}."))
