"""Realistic sample data: a province's agencies and staff, for tests, demos and the bulk benchmark.

Pure Python and deterministic: the same arguments (including ``seed``) always give exactly the same
rows. Nothing here touches a database.

* **Agencies**: the provincial People's Committee (``000.00.00.<code>``, level ``province``), its
  departments (``000.00.NN.<code>``, level ``province``) and communes and wards
  (``000.NN.NN.<code>`` with a first group other than ``00``, level ``commune``), all below the
  People's Committee and on one mail domain. By default about one agency per 100 officials (at least
  3, at most 120); departments get about three times the staff of a commune. ``staff_count`` is the
  staff generated for the agency plus a few percent: officials without a mailbox yet, so coverage
  statistics come out below 100% as in real life.
* **Staff**: Vietnamese names drawn by the real shares of family names (Nguyễn ~38%, Trần ~11%, Lê
  ~9.5%, ...), half women and half men with typical middle and given names, so addresses collide
  (lamnt, lamnt2, ...) about as often as in a real province. Titles follow each kind of agency (one
  Giám đốc per department, one Chủ tịch per commune, mostly Chuyên viên). About 70% of rows have a
  mobile phone and about 30% a personal email; the other cells are empty, as in HR exports.

The column names are the ones ``govmail agency import`` and ``govmail account bulk-create`` read.
"""

from __future__ import annotations

import csv
import math
import os
import random
import re
import unicodedata
from pathlib import Path
from typing import Sequence

AGENCY_COLUMNS = ("code", "name", "short_name", "level", "parent", "domain", "staff_count")
STAFF_COLUMNS = ("full_name", "title", "employee_code", "agency", "phone", "personal_email")
MAX_AGENCIES_DEFAULT = 120

# Share of the population in percent (public statistics of Vietnamese family names).
FAMILY_NAMES: tuple[tuple[str, float], ...] = (
    ("Nguyễn", 38.0), ("Trần", 11.0), ("Lê", 9.5), ("Phạm", 7.0), ("Hoàng", 3.0), ("Huỳnh", 2.0),
    ("Phan", 4.5), ("Vũ", 2.0), ("Võ", 2.0), ("Đặng", 2.1), ("Bùi", 2.0), ("Đỗ", 1.4), ("Hồ", 1.3),
    ("Ngô", 1.3), ("Dương", 1.0), ("Lý", 0.5),
    # The tail (about 11%).
    ("Đinh", 1.0), ("Đào", 0.9), ("Đoàn", 0.9), ("Trịnh", 0.9), ("Hà", 0.7), ("Phùng", 0.6),
    ("Lương", 0.6), ("Mai", 0.6), ("Cao", 0.6), ("Tạ", 0.4), ("Lưu", 0.4), ("Chu", 0.4), ("Kiều", 0.4),
    ("Tô", 0.3), ("Quách", 0.3), ("Vương", 0.3), ("Lại", 0.3), ("Khổng", 0.2), ("Triệu", 0.2),
    ("Lâm", 0.2), ("Nông", 0.2), ("Tăng", 0.1),
)

FEMALE_MIDDLE = ("Thu", "Ngọc", "Thanh", "Kim", "Minh", "Hồng", "Phương", "Thúy", "Thùy", "Bích", "Diệu",
                 "Mai", "Hải", "Khánh", "Quỳnh", "Hoài", "Ánh", "Lan", "Hương", "Thảo")
MALE_MIDDLE = ("Đức", "Minh", "Hữu", "Quang", "Công", "Xuân", "Thanh", "Tuấn", "Mạnh", "Đình", "Ngọc",
               "Trọng", "Quốc", "Hoàng", "Việt", "Duy", "Anh", "Thế", "Tiến", "Bá", "Khắc", "Trung")
# (name, weight): the common ones first and heavier.
FEMALE_GIVEN: tuple[tuple[str, int], ...] = tuple(
    [(n, 3) for n in ("Hương", "Lan", "Linh", "Trang", "Hà", "Hoa", "Mai", "Nga", "Thảo", "Huyền", "Ngọc",
                      "Phương", "Thủy", "Yến", "Hằng", "Dung", "Anh", "Hạnh", "Hiền", "Loan")]
    + [(n, 1) for n in ("Oanh", "Tuyết", "Vân", "Nhung", "Lâm", "Hồng", "Quỳnh", "Thu", "Thúy", "Trinh",
                        "Uyên", "Giang", "Chi", "Duyên", "Liên", "Tâm", "Xuân", "Nguyệt", "Ánh", "Nhàn",
                        "Thơm", "Châm", "Lý", "Vy", "My", "Hậu", "Diệp", "Lụa", "Cúc", "Đào", "Gấm",
                        "Hòa", "Huệ", "Hường", "Khuyên", "Lệ", "Liễu", "Mến", "Nhi", "Phượng", "Quyên",
                        "Sen", "Thoa", "Thương", "Trâm", "Xoan", "Ly", "Thắm", "Kiều", "Lành", "Bích",
                        "Diệu", "Tươi", "Vinh", "Hải", "Hiên", "Nương")]
)
MALE_GIVEN: tuple[tuple[str, int], ...] = tuple(
    [(n, 3) for n in ("Anh", "Hùng", "Dũng", "Tuấn", "Hải", "Nam", "Long", "Minh", "Sơn", "Thắng", "Hiếu",
                      "Trung", "Cường", "Đức", "Quân", "Hoàng", "Tùng", "Việt", "Bình", "Khánh")]
    + [(n, 1) for n in ("Thành", "Huy", "Phong", "Quang", "Toàn", "Tiến", "Kiên", "Lâm", "Hưng", "Thịnh",
                        "Hòa", "Vinh", "Tâm", "Phúc", "Thái", "Chiến", "Dương", "Hiệp", "Lợi", "Thanh",
                        "Công", "Định", "Hậu", "Khoa", "Lực", "Nghĩa", "Phương", "Thuận", "Trọng", "Vũ",
                        "Bảo", "Chung", "Doanh", "Giang", "Hào", "Hiển", "Hợp", "Khải", "Khang", "Lộc",
                        "Luân", "Mạnh", "Nhật", "Ninh", "Quyết", "Sang", "Tài", "Tân", "Thiện", "Thông",
                        "Trường", "Tú", "Tuyên", "Vượng", "Đạt", "Điệp", "Đông", "Kiệt", "Phát", "Chính")]
)

# (name, short name, NN of 000.00.NN, weight, head title, deputy title). The first five keep the
# codes of samples/agencies.csv.
DEPARTMENTS: tuple[tuple[str, str, int, float, str, str], ...] = (
    ("Sở Nội vụ", "snv", 12, 3.0, "Giám đốc", "Phó Giám đốc"),
    ("Sở Tài chính", "stc", 16, 3.5, "Giám đốc", "Phó Giám đốc"),
    ("Sở Kế hoạch và Đầu tư", "skhdt", 15, 3.0, "Giám đốc", "Phó Giám đốc"),
    ("Sở Y tế", "syt", 21, 4.0, "Giám đốc", "Phó Giám đốc"),
    ("Sở Giáo dục và Đào tạo", "sgddt", 10, 4.0, "Giám đốc", "Phó Giám đốc"),
    ("Sở Tư pháp", "stp", 13, 2.5, "Giám đốc", "Phó Giám đốc"),
    ("Sở Xây dựng", "sxd", 20, 3.5, "Giám đốc", "Phó Giám đốc"),
    ("Sở Công Thương", "sct", 17, 3.0, "Giám đốc", "Phó Giám đốc"),
    ("Sở Nông nghiệp và Môi trường", "snnmt", 18, 4.0, "Giám đốc", "Phó Giám đốc"),
    ("Sở Văn hóa, Thể thao và Du lịch", "svhttdl", 23, 3.0, "Giám đốc", "Phó Giám đốc"),
    ("Sở Khoa học và Công nghệ", "skhcn", 22, 3.0, "Giám đốc", "Phó Giám đốc"),
    ("Thanh tra tỉnh", "ttt", 25, 2.5, "Chánh Thanh tra tỉnh", "Phó Chánh Thanh tra tỉnh"),
    ("Văn phòng UBND tỉnh", "vpubnd", 1, 3.0, "Chánh Văn phòng", "Phó Chánh Văn phòng"),
    ("Sở Dân tộc và Tôn giáo", "sdttg", 26, 2.0, "Giám đốc", "Phó Giám đốc"),
    ("Sở Ngoại vụ", "sngv", 14, 2.0, "Giám đốc", "Phó Giám đốc"),
    ("Ban Quản lý các khu công nghiệp", "bqlkcn", 30, 2.0, "Trưởng ban", "Phó Trưởng ban"),
    ("Văn phòng Đoàn ĐBQH và HĐND tỉnh", "vpdbqh", 2, 2.0, "Chánh Văn phòng", "Phó Chánh Văn phòng"),
)

# (kind, place name); wards (phường) and communes (xã) interleaved so any prefix has both.
_WARDS = ("Vĩnh Yên", "Phúc Yên", "Xuân Hòa", "Liên Bảo", "Khai Quang", "Đồng Tâm", "Hội Hợp",
          "Tích Sơn", "Đống Đa", "Ngô Quyền", "Hùng Vương", "Trưng Trắc", "Phúc Thắng", "Tiền Châu",
          "Nam Viêm", "Định Trung", "Thanh Trù", "Hương Canh", "Thổ Tang", "Vĩnh Tường", "Yên Lạc",
          "Bình Xuyên", "Tam Dương", "Lập Thạch")
_COMMUNES = ("Tam Đảo", "Đại Đình", "Hợp Châu", "Minh Quang", "Hồ Sơn", "Đạo Trù", "Bồ Lý", "Yên Dương",
             "Kim Long", "Hướng Đạo", "Hoàng Đan", "Hợp Thịnh", "Đạo Tú", "An Hòa", "Thanh Vân", "Duy Phiên",
             "Hoàng Hoa", "Hoàng Lâu", "Vân Hội", "Liên Châu", "Đồng Tĩnh", "Xuân Lôi", "Văn Quán",
             "Sơn Đông", "Tây Sơn", "Triệu Đề", "Đình Chu", "Liên Hòa", "Bàn Giản", "Tử Du", "Hợp Lý",
             "Thái Hòa", "Quang Sơn", "Ngọc Mỹ", "Bắc Bình", "Sông Lô", "Tam Sơn", "Hải Lựu", "Nhân Đạo",
             "Đôn Nhân", "Phương Khoan", "Lãng Công", "Quang Yên", "Đồng Thịnh", "Đức Bác", "Yên Thạch",
             "Tứ Yên", "Như Thụy", "Cao Phong", "Đồng Quế", "Nhạo Sơn", "Bạch Lưu", "Tứ Trưng", "Vũ Di",
             "Vĩnh Thịnh", "Vĩnh Hưng", "Vĩnh Phú", "Bình Dương", "Lũng Hòa", "Tân Tiến", "Tam Phúc",
             "Ngũ Kiên", "An Tường", "Tuân Chính", "Kim Xá", "Yên Bình", "Chấn Hưng", "Đại Đồng",
             "Thượng Trưng", "Phú Đa", "Vĩnh Ninh", "Tề Lỗ", "Đồng Cương", "Trung Nguyên", "Nguyệt Đức",
             "Hồng Phương", "Văn Tiến", "Bình Định", "Tam Hồng", "Yên Đồng", "Trung Kiên", "Thanh Lãng",
             "Gia Khánh", "Hương Sơn", "Bá Hiến", "Thiện Kế", "Trung Mỹ", "Sơn Lôi", "Tam Hợp", "Đạo Đức",
             "Phú Xuân", "Tân Phong", "Quất Lưu", "Cao Minh", "Ngọc Thanh", "Hợp Hòa", "Thanh Lâm",
             "Tiên Lữ", "Đồng Ích", "Xuân Hòa Lập Thạch", "Liễn Sơn", "Văn Xuân", "Quang Minh", "Tân Lập",
             "Yên Phương", "Đại Tự", "Minh Tân")
PLACES: tuple[tuple[str, str], ...] = tuple(
    [pair for i in range(len(_COMMUNES))
     for pair in ((("phường", _WARDS[i]),) if i < len(_WARDS) else ()) + (("xã", _COMMUNES[i]),)]
)

# (title, weight) for the officials below the leaders.
DEPARTMENT_TITLES: tuple[tuple[str, float], ...] = (
    ("Chuyên viên", 52), ("Chuyên viên chính", 18), ("Phó Trưởng phòng", 10), ("Trưởng phòng", 6),
    ("Kế toán", 4), ("Văn thư", 3), ("Nhân viên", 4), ("Chuyên viên cao cấp", 1), ("Lưu trữ viên", 2),
)
INSPECTION_TITLES: tuple[tuple[str, float], ...] = (
    ("Thanh tra viên", 45), ("Thanh tra viên chính", 15), ("Chuyên viên", 15), ("Phó Trưởng phòng", 10),
    ("Trưởng phòng", 6), ("Kế toán", 3), ("Văn thư", 3), ("Thanh tra viên cao cấp", 3),
)
COMMUNE_TITLES: tuple[tuple[str, float], ...] = (
    ("Công chức Văn phòng - Thống kê", 14), ("Công chức Tài chính - Kế toán", 12),
    ("Công chức Tư pháp - Hộ tịch", 12), ("Công chức Địa chính - Xây dựng", 12),
    ("Công chức Văn hóa - Xã hội", 12), ("Chuyên viên", 28), ("Văn thư", 4), ("Kế toán", 4),
    ("Chỉ huy trưởng Ban Chỉ huy Quân sự", 2),
)
PROVINCE_TITLES: tuple[tuple[str, float], ...] = (("Chuyên viên", 70), ("Chuyên viên chính", 20), ("Thư ký", 10))

PHONE_PREFIXES = ("090", "091", "093", "094", "096", "097", "098", "032", "033", "034", "035", "036",
                  "037", "038", "039", "081", "082", "083", "084", "085", "086", "088", "089")
_PROVINCE_CODE = re.compile(r"^[A-Z]\d{2}$")


def province(accounts: int, *, seed: int = 1, province_code: str = "H62", domain: str = "vinhphuc.gov.vn",
             province_name: str = "Vĩnh Phúc", agencies: int | None = None,
             ) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(agency rows, staff rows) of a sample province with ``accounts`` officials.

    Agency rows have keys code, name, short_name, level, parent, domain, staff_count (what
    ``govmail agency import`` reads). Staff rows have keys full_name, title, employee_code, agency,
    phone, personal_email (what ``govmail account bulk-create`` reads; agency = an agency code).
    Parents come before children. ``agencies`` overrides the default of one agency per 100
    officials (3 to 120). The same arguments always give the same rows.

    :raises ValueError: a negative ``accounts``, a ``province_code`` not like H62, or more agencies
        than there are sample names for.
    """
    if accounts < 0:
        raise ValueError(f"accounts must be 0 or more, not {accounts}")
    if not _PROVINCE_CODE.match(province_code):
        raise ValueError(f"province_code {province_code!r} is not a letter and two digits like H62")
    count = agencies if agencies is not None else min(max(round(accounts / 100), 3), MAX_AGENCIES_DEFAULT)
    limit = 1 + len(DEPARTMENTS) + len(PLACES)
    if not 1 <= count <= limit:
        raise ValueError(f"agencies must be between 1 and {limit}, not {count}")
    rng = random.Random(seed)
    rows, weights, kinds = _agency_rows(count, province_code, domain, province_name)
    sizes = _allocate(accounts, [w * rng.uniform(0.8, 1.2) for w in weights])
    staff: list[dict[str, str]] = []
    for agency, kind, size in zip(rows, kinds, sizes):
        titles = _titles(rng, kind, size)
        for title in titles:
            full_name, parts = _person(rng)
            staff.append({
                "full_name": full_name,
                "title": title,
                "employee_code": f"{province_code}-{len(staff) + 1:06d}",
                "agency": agency["code"],
                "phone": _phone(rng) if rng.random() < 0.7 else "",
                "personal_email": _personal_email(rng, parts) if rng.random() < 0.3 else "",
            })
        without_mailbox = max(1, round(size * rng.uniform(0.02, 0.08)))
        agency["staff_count"] = str(size + without_mailbox)
    return rows, staff


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    """Write ``rows`` as CSV the way Excel saves "CSV UTF-8": UTF-8 with BOM, comma-separated; the
    header is the keys of the first row. The file is replaced atomically.

    :raises ValueError: no rows (there would be no header).
    """
    if not rows:
        raise ValueError(f"no rows to write to {path}")
    temp = path.with_name(path.name + ".tmp")
    with temp.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(temp, path)


# --- agencies ------------------------------------------------------------------------------------


def _agency_rows(count: int, code: str, domain: str, province_name: str,
                 ) -> tuple[list[dict[str, str]], list[float], list[str]]:
    """The agency rows (staff_count still empty), their staff weights and kinds."""
    top = f"000.00.00.{code}"
    rows = [_agency(top, f"UBND tỉnh {province_name}", "ubnd", "province", "", domain)]
    weights, kinds = [0.5], ["province"]
    rest = count - 1
    departments = min(len(DEPARTMENTS), max(1, round(rest * 0.3))) if rest else 0
    communes = rest - departments
    if communes > len(PLACES):  # more agencies than commune names: use every department first
        departments = min(len(DEPARTMENTS), rest)
        communes = rest - departments
    for name, short, number, weight, head, deputy in DEPARTMENTS[:departments]:
        rows.append(_agency(f"000.00.{number:02d}.{code}", name, short, "province", top, domain))
        weights.append(weight)
        kinds.append(f"department:{head}:{deputy}" if name != "Thanh tra tỉnh" else f"inspection:{head}:{deputy}")
    for index, (kind, place) in enumerate(PLACES[:communes]):
        agency_code = f"000.{index // 99 + 1:02d}.{index % 99 + 1:02d}.{code}"
        short = ("p" if kind == "phường" else "x") + _ascii(place).replace(" ", "")
        rows.append(_agency(agency_code, f"UBND {kind} {place}", short, "commune", top, domain))
        weights.append(1.0)
        kinds.append(f"commune:{kind}")
    return rows, weights, kinds


def _agency(code: str, name: str, short: str, level: str, parent: str, domain: str) -> dict[str, str]:
    return {"code": code, "name": name, "short_name": short, "level": level, "parent": parent,
            "domain": domain, "staff_count": ""}


def _allocate(total: int, weights: Sequence[float]) -> list[int]:
    """Split ``total`` in proportion to ``weights`` (largest remainder), one each first when possible."""
    base = [1] * len(weights) if total >= len(weights) else [0] * len(weights)
    left = total - sum(base)
    whole = sum(weights)
    shares = [left * w / whole for w in weights]
    sizes = [b + math.floor(s) for b, s in zip(base, shares)]
    order = sorted(range(len(weights)), key=lambda i: (-(shares[i] - math.floor(shares[i])), i))
    for i in order[: total - sum(sizes)]:
        sizes[i] += 1
    return sizes


def _titles(rng: random.Random, kind: str, size: int) -> list[str]:
    """Leaders first (as HR exports list them), then the staff."""
    if size == 0:
        return []
    if kind == "province":
        leaders = ["Chủ tịch UBND tỉnh"] + ["Phó Chủ tịch UBND tỉnh"] * min(3, size // 4)
        mix = PROVINCE_TITLES
    elif kind.startswith("commune"):
        level = kind.split(":")[1]
        leaders = [f"Chủ tịch UBND {level}"] + [f"Phó Chủ tịch UBND {level}"] * min(2, (size - 1) // 2)
        mix = COMMUNE_TITLES
    else:
        group, head, deputy = kind.split(":")
        leaders = [head] + [deputy] * min(3, 1 + size // 25 if size >= 3 else 0)
        mix = INSPECTION_TITLES if group == "inspection" else DEPARTMENT_TITLES
    leaders = leaders[:size]
    names, weights = zip(*mix)
    return leaders + rng.choices(names, weights, k=size - len(leaders))


# --- people --------------------------------------------------------------------------------------

_FAMILY, _FAMILY_W = zip(*FAMILY_NAMES)
_FEMALE, _FEMALE_W = zip(*FEMALE_GIVEN)
_MALE, _MALE_W = zip(*MALE_GIVEN)


def _person(rng: random.Random) -> tuple[str, tuple[str, ...]]:
    """(full name, its words) of one official, in NFC."""
    family = rng.choices(_FAMILY, _FAMILY_W)[0]
    if rng.random() < 0.5:
        given = rng.choices(_FEMALE, _FEMALE_W)[0]
        first = "Thị" if rng.random() < 0.55 else rng.choice(FEMALE_MIDDLE)
        middles = [first]
        if rng.random() < 0.15:
            middles.append(rng.choice([m for m in FEMALE_MIDDLE if m != first and m != given]))
    else:
        given = rng.choices(_MALE, _MALE_W)[0]
        first = "Văn" if rng.random() < 0.45 else rng.choice(MALE_MIDDLE)
        middles = [first]
        if rng.random() < 0.08:
            middles.append(rng.choice([m for m in MALE_MIDDLE if m != first and m != given]))
    parts = tuple(unicodedata.normalize("NFC", w) for w in (family, *middles, given))
    return " ".join(parts), parts


def _ascii(text: str) -> str:
    """'Đặng Thị Ánh' -> 'dang thi anh'."""
    text = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    return "".join(c for c in text if not unicodedata.combining(c)).lower()


def _phone(rng: random.Random) -> str:
    return rng.choice(PHONE_PREFIXES) + f"{rng.randrange(10_000_000):07d}"


def _personal_email(rng: random.Random, parts: tuple[str, ...]) -> str:
    words = [_ascii(w) for w in parts]
    family, middles, given = words[0], words[1:-1], words[-1]
    initials = family[0] + "".join(m[0] for m in middles)
    year = rng.randrange(1965, 2002)
    local = rng.choice((
        f"{given}{initials}{year % 100:02d}",
        f"{family}{''.join(middles)}{given}",
        f"{given}.{family}{year}",
        f"{family}{given}{rng.randrange(1, 100)}",
    ))
    return f"{local}@{rng.choices(('gmail.com', 'yahoo.com'), (8, 2))[0]}"
