"""Who may use the dashboard: staff signing in with their Spotless admin account.

Sign-in checks the e-mail and password against `users.password_hash`, then requires the admin
role and an account that is not suspended; the session keeps the user id (and the CSRF token),
nothing else. Every request reloads that user, so a suspension or a role change locks them out
at once. Sign-in attempts are rate limited like the API's, per address and per e-mail.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette_admin.auth import AdminUser, AuthProvider, LoginFailed

from admin.csrf import rotate_csrf_token
from core.accounts import Role, normalise_email
from core.errors import Invalid, RateLimited
from core.settings import Settings
from storage import ratelimit
from storage.models import User
from storage.passwords import verify_password

SESSION_USER_KEY = "staff_user_id"


class StaffAuthProvider(AuthProvider):
    def __init__(self, settings: Settings) -> None:
        super().__init__(login_path="/login", logout_path="/logout")
        self.settings = settings

    async def login(self, username: str, password: str, remember_me: bool,
                    request: Request) -> Response | None:
        try:
            email = normalise_email(username)
        except Invalid:
            email = ""
        await self._count_attempt(request, email or username.strip().lower())
        user = await User.get_or_none(email=email) if email else None
        matches = await verify_password(password, user.password_hash if user else None, self.settings)
        if user is None or not matches:
            raise LoginFailed("E-mail or password is wrong.")
        # Said only after the password matched, so these messages reveal nothing to a guesser.
        if user.suspended_at is not None:
            raise LoginFailed("This account is suspended.")
        if user.role != Role.ADMIN:
            raise LoginFailed(
                f"This dashboard is for Spotless staff. You signed in with a {user.role} "
                "account, which cannot use it; use the Spotless app instead."
            )
        request.session.clear()
        request.session[SESSION_USER_KEY] = str(user.id)
        rotate_csrf_token(request.session)
        return None

    async def logout(self, request: Request) -> Response | None:
        request.session.clear()
        return None

    async def authenticate(self, request: Request) -> AdminUser | None:
        user_id = request.session.get(SESSION_USER_KEY)
        if not user_id:
            return None
        user = await User.get_or_none(id=user_id)
        if user is None or user.role != Role.ADMIN or user.suspended_at is not None:
            request.session.pop(SESSION_USER_KEY, None)
            return None
        request.state.staff = user
        return AdminUser(username=user.name)

    async def _count_attempt(self, request: Request, email_key: str) -> None:
        ip = request.client.host if request.client else "unknown"
        try:
            await ratelimit.hit(f"admin-login:ip:{ip}", limit=self.settings.login_rate_per_ip,
                                window_s=self.settings.rate_window_s)
            await ratelimit.hit(f"admin-login:email:{email_key}",
                                limit=self.settings.login_rate_per_email,
                                window_s=self.settings.rate_window_s)
        except RateLimited as exc:
            raise LoginFailed(f"Too many sign-in attempts; try again in {exc.retry_after_s} s.") from None


def current_staff(request: Request) -> User:
    """The signed-in staff member of an authenticated admin request."""
    staff: User = request.state.staff
    return staff
