"""Interface text in Vietnamese (the default) and English.

Templates write the English text, ``_("Sign in")``; :data:`VI` gives the Vietnamese. A text missing
from :data:`VI` shows in English (the test suite checks that none is missing).
"""

from __future__ import annotations

from typing import Callable

from starlette.requests import Request

LANGUAGES = ("vi", "en")
DEFAULT = "vi"
COOKIE = "lang"


def language(request: Request) -> str:
    """``?lang=`` when given, else the ``lang`` cookie, else Vietnamese."""
    for value in (request.query_params.get("lang"), request.cookies.get(COOKIE)):
        if value in LANGUAGES:
            return value
    return DEFAULT


def translator(lang: str) -> Callable[..., str]:
    """``_(text, **values)``: the text in ``lang``, with ``{name}`` fields filled in."""
    table = VI if lang == "vi" else {}

    def _(text: str, **values: object) -> str:
        out = table.get(text, text)
        return out.format(**values) if values else out

    return _


VI: dict[str, str] = {
    # layout
    "Official mail": "Thư điện tử công vụ",
    "Agency self-service portal": "Cổng tự phục vụ của cơ quan",
    "Home": "Trang chủ",
    "Agencies": "Cơ quan",
    "Requests": "Yêu cầu",
    "My account": "Tài khoản của tôi",
    "Administration": "Quản trị",
    "API tokens": "Mã truy cập API",
    "Sign out": "Đăng xuất",
    "Language": "Ngôn ngữ",
    "Error": "Lỗi",
    "Back": "Quay lại",
    "Not found.": "Không tìm thấy.",
    "Not a valid value: {fields}.": "Giá trị không hợp lệ: {fields}.",
    "This form has expired or did not come from this portal. Go back, reload the page and try again.":
        "Biểu mẫu đã hết hạn hoặc không xuất phát từ cổng này. Hãy quay lại, tải lại trang và thử lại.",
    # sign-in
    "Sign in": "Đăng nhập",
    "Email address": "Địa chỉ thư điện tử",
    "Password": "Mật khẩu",
    "The address or the password is wrong.": "Địa chỉ hoặc mật khẩu không đúng.",
    "Too many failed attempts. Try again in {minutes} minutes.":
        "Đăng nhập sai quá nhiều lần. Hãy thử lại sau {minutes} phút.",
    "Two-step verification": "Xác thực hai bước",
    "Enter the 6-digit code from your authenticator app, or one of your recovery codes.":
        "Nhập mã 6 chữ số trong ứng dụng xác thực, hoặc một mã khôi phục.",
    "Code": "Mã",
    "Verify": "Xác nhận",
    "The code is wrong or was already used.": "Mã không đúng hoặc đã được dùng.",
    "Your session has ended. Sign in again.": "Phiên làm việc đã kết thúc. Hãy đăng nhập lại.",
    "Set up two-step verification": "Thiết lập xác thực hai bước",
    "Administrators must use two-step verification. Scan this QR code with an authenticator app (FreeOTP, Google Authenticator, Microsoft Authenticator), then type the code it shows.":
        "Quản trị viên bắt buộc dùng xác thực hai bước. Quét mã QR này bằng ứng dụng xác thực (FreeOTP, Google Authenticator, Microsoft Authenticator), rồi nhập mã ứng dụng hiển thị.",
    "Scan this QR code with an authenticator app, then type the code it shows.":
        "Quét mã QR này bằng ứng dụng xác thực, rồi nhập mã ứng dụng hiển thị.",
    "Or type this key into the app:": "Hoặc nhập khóa này vào ứng dụng:",
    "Recovery codes": "Mã khôi phục",
    "Keep these recovery codes somewhere safe. Each one signs you in once if you lose your phone. They are shown only now.":
        "Hãy cất giữ các mã khôi phục này ở nơi an toàn. Mỗi mã dùng được một lần khi bạn mất điện thoại. Mã chỉ hiển thị lần này.",
    "Continue": "Tiếp tục",
    # me
    "Full name": "Họ và tên",
    "Agency": "Cơ quan",
    "Status": "Trạng thái",
    "Change password": "Đổi mật khẩu",
    "You must choose your own password before you continue.": "Bạn phải đặt mật khẩu của riêng mình trước khi tiếp tục.",
    "Current password": "Mật khẩu hiện tại",
    "New password": "Mật khẩu mới",
    "New password again": "Nhập lại mật khẩu mới",
    "The two new passwords differ.": "Hai mật khẩu mới không giống nhau.",
    "Your password has been changed.": "Mật khẩu đã được thay đổi.",
    "Password rules": "Quy định về mật khẩu",
    "At least {n} characters (a passphrase of several words is good).": "Ít nhất {n} ký tự (nên dùng một cụm nhiều từ).",
    "Not your name or your address.": "Không chứa họ tên hoặc địa chỉ thư của bạn.",
    "At most {n} bytes; no control characters.": "Tối đa {n} byte; không có ký tự điều khiển.",
    "Two-step verification is on. Recovery codes left: {n}.": "Xác thực hai bước đang bật. Số mã khôi phục còn lại: {n}.",
    "Two-step verification is off.": "Xác thực hai bước đang tắt.",
    "Turn on": "Bật",
    "Turn off": "Tắt",
    "Digital certificate": "Chứng thư số",
    "No digital certificate is bound to your account.": "Chưa có chứng thư số nào gắn với tài khoản của bạn.",
    "Valid until": "Hiệu lực đến",
    "Subject": "Chủ thể",
    "Issuer": "Tổ chức cấp",
    # agencies
    "Accounts": "Tài khoản",
    "Overview": "Tổng quan",
    "Statistics": "Thống kê",
    "active": "đang hoạt động",
    "suspended": "tạm khóa",
    "retired": "đã nghỉ",
    "purged": "đã xóa",
    "Total": "Tổng số",
    "Used mail in the last {days} days": "Đã sử dụng thư trong {days} ngày qua",
    "Certificates expiring within 30 days": "Chứng thư số hết hạn trong 30 ngày tới",
    "None.": "Không có.",
    "Agencies below": "Cơ quan trực thuộc",
    "Search": "Tìm kiếm",
    "Name, address or employee code": "Họ tên, địa chỉ hoặc mã cán bộ",
    "All statuses": "Mọi trạng thái",
    "{total} accounts": "{total} tài khoản",
    "Page {page} of {pages}": "Trang {page} / {pages}",
    "Previous": "Trang trước",
    "Next": "Trang sau",
    "Address": "Địa chỉ",
    "Title": "Chức danh",
    "Employee code": "Mã cán bộ",
    "Phone": "Điện thoại",
    "Personal email": "Thư cá nhân",
    "Period": "Kỳ thống kê",
    "Show": "Xem",
    "Regular use of official mail": "Tỷ lệ thường xuyên sử dụng thư điện tử công vụ",
    "Eligible": "Thuộc diện thống kê",
    "Regular users": "Thường xuyên sử dụng",
    "Regular use (%)": "Thường xuyên sử dụng (%)",
    "Daily use (%)": "Sử dụng hằng ngày (%)",
    "Dormant": "Không hoạt động",
    "not published": "không công bố",
    # requests
    "New accounts": "Tạo tài khoản mới",
    "One account": "Một tài khoản",
    "Upload a staff list (CSV)": "Tải lên danh sách cán bộ (CSV)",
    "Columns: Họ và tên (full name), Chức vụ (title), Số điện thoại, Mã cán bộ (employee code), Email cá nhân; UTF-8 or Windows-1258.":
        "Các cột: Họ và tên, Chức vụ, Số điện thoại, Mã cán bộ, Email cá nhân; mã UTF-8 hoặc Windows-1258.",
    "File": "Tệp",
    "Check the file": "Kiểm tra tệp",
    "What will happen": "Kết quả dự kiến",
    "Line": "Dòng",
    "Action": "Thao tác",
    "Detail": "Chi tiết",
    "create": "tạo mới",
    "update": "cập nhật",
    "unchanged": "không đổi",
    "conflict": "xung đột",
    "error": "lỗi",
    "Fix the lines marked in the file and upload it again.": "Hãy sửa các dòng bị đánh dấu trong tệp rồi tải lên lại.",
    "Submit the request": "Gửi yêu cầu",
    "Request": "Yêu cầu",
    "Kind": "Loại",
    "Summary": "Nội dung",
    "Requested by": "Người yêu cầu",
    "Submitted": "Thời gian gửi",
    "Decided by": "Người duyệt",
    "Reason": "Lý do",
    "Outcome": "Kết quả",
    "pending": "chờ duyệt",
    "applied": "đã thực hiện",
    "rejected": "bị từ chối",
    "failed": "thất bại",
    "suspend": "tạm khóa",
    "restore": "mở khóa",
    "retire": "cho nghỉ",
    "transfer": "điều chuyển",
    "reset_password": "cấp lại mật khẩu",
    "cert_bind": "gắn chứng thư số",
    "Approve": "Phê duyệt",
    "Reject": "Từ chối",
    "Reason for rejecting": "Lý do từ chối",
    "No requests.": "Không có yêu cầu nào.",
    "All": "Tất cả",
    "Download the credentials file": "Tải tệp bàn giao mật khẩu",
    "The file holds the initial passwords. It can be downloaded once; hand each official their line and delete the file.":
        "Tệp chứa mật khẩu ban đầu và chỉ tải được một lần; hãy giao cho từng cán bộ dòng của họ rồi xóa tệp.",
    "Request #{id} was submitted.": "Đã gửi yêu cầu #{id}.",
    "Suspend": "Tạm khóa",
    "Restore": "Mở khóa",
    "Retire": "Cho nghỉ",
    "Reset password": "Cấp lại mật khẩu",
    "Transfer to agency (code)": "Điều chuyển sang cơ quan (mã)",
    "Transfer": "Điều chuyển",
    "Bind a certificate (PEM)": "Gắn chứng thư số (PEM)",
    "Bind": "Gắn",
    "Ask the province for": "Đề nghị tỉnh thực hiện",
    "Created": "Đã tạo",
    "Skipped": "Bỏ qua",
    # administration
    "Administrators": "Quản trị viên",
    "Role": "Vai trò",
    "province administrator": "quản trị viên cấp tỉnh",
    "administrator of {code}": "quản trị viên của {code}",
    "Make an official the administrator of an agency": "Giao quyền quản trị cơ quan cho một cán bộ",
    "Agency code (empty: province administrator)": "Mã cơ quan (để trống: quản trị viên cấp tỉnh)",
    "Grant": "Giao quyền",
    "Revoke": "Thu hồi",
    "Auto-approval rules": "Quy tắc tự động phê duyệt",
    "Requests of this kind for this agency and those below it are applied without waiting.":
        "Yêu cầu loại này của cơ quan và các cơ quan trực thuộc được thực hiện ngay, không chờ duyệt.",
    "Add": "Thêm",
    "Remove": "Bỏ",
    "Name": "Tên",
    "Last used": "Lần dùng gần nhất",
    "Create a token": "Tạo mã truy cập",
    "Copy this token now; it is not shown again:": "Hãy sao chép mã này ngay; nó sẽ không hiển thị lại:",
    "revoked": "đã thu hồi",
    "Never": "Chưa dùng",
}
