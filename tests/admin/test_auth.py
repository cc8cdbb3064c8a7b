"""Who gets into the dashboard: staff with an admin account, and nobody else."""

from __future__ import annotations

from core.clock import utcnow
from storage.models import User
from tests.admin.conftest import Dashboard, MakePerson, Person


async def test_staff_member_signs_in_and_sees_the_dashboard(browser: Dashboard, staff: Person):
    # given a staff member with an admin account
    # when they sign in with their e-mail and password
    response = await browser.log_in(staff.email, staff.password)

    # then they land on the dashboard, which names them and lists its pages
    assert response.status_code == 303
    assert response.headers["location"].endswith("/admin/")
    home = await browser.client.get("/admin/")
    assert home.status_code == 200
    assert "Olive Operations" in home.text
    for page in ("/admin/user/list", "/admin/audit-log/list", "/admin/outbox-event/list"):
        assert page in home.text


async def test_visitor_without_a_session_is_sent_to_the_login_page(browser: Dashboard):
    # given a browser that never signed in
    # when it opens the users list
    response = await browser.client.get("/admin/user/list")

    # then it is redirected to sign in first
    assert response.status_code == 303
    assert "/admin/login" in response.headers["location"]


async def test_client_account_is_refused_with_a_clear_message(browser: Dashboard,
                                                              make_person: MakePerson):
    # given a client of the marketplace, with the right password
    client = await make_person(role="client", name="Cleo Client")

    # when they try to sign in to the dashboard
    response = await browser.log_in(client.email, client.password)

    # then they are told it is for staff, and still have no session
    assert response.status_code == 400
    assert "This dashboard is for Spotless staff" in response.text
    assert "client account" in response.text
    assert (await browser.client.get("/admin/user/list")).status_code == 303


async def test_cleaner_account_is_refused(browser: Dashboard, make_person: MakePerson):
    # given a cleaner account
    cleaner = await make_person(role="cleaner", name="Carl Cleaner")

    # when they sign in
    response = await browser.log_in(cleaner.email, cleaner.password)

    # then they are refused
    assert response.status_code == 400
    assert "cleaner account" in response.text


async def test_wrong_password_does_not_say_whether_the_account_exists(browser: Dashboard,
                                                                      staff: Person):
    # given a staff account
    # when someone signs in with a wrong password, and with an unknown e-mail
    wrong = await browser.log_in(staff.email, "not the password at all")
    unknown = await browser.log_in("nobody.here@example.com", "not the password at all")

    # then both get the same answer
    assert wrong.status_code == unknown.status_code == 400
    assert "E-mail or password is wrong." in wrong.text
    assert "E-mail or password is wrong." in unknown.text


async def test_suspended_admin_cannot_sign_in(browser: Dashboard, make_person: MakePerson):
    # given an admin whose account is suspended
    admin = await make_person(role="admin")
    await User.filter(id=admin.user.id).update(suspended_at=utcnow())

    # when they sign in with the right password
    response = await browser.log_in(admin.email, admin.password)

    # then they are refused, and told why
    assert response.status_code == 400
    assert "This account is suspended." in response.text


async def test_admin_suspended_mid_session_is_locked_out_at_their_next_click(dashboard: Dashboard,
                                                                              staff: Person):
    # given a signed-in staff member
    assert (await dashboard.client.get("/admin/user/list")).status_code == 200

    # when their account is suspended meanwhile
    await User.filter(id=staff.user.id).update(suspended_at=utcnow())

    # then their next page load sends them to the login page
    response = await dashboard.client.get("/admin/user/list")
    assert response.status_code == 303
    assert "/admin/login" in response.headers["location"]


async def test_logout_ends_the_session(dashboard: Dashboard):
    # given a signed-in staff member on the dashboard
    token = await dashboard.form_token("/admin/user/list")

    # when they press "Sign out" (a form POST carrying the page's token)
    response = await dashboard.client.post("/admin/logout", data={"csrftoken": token})

    # then the session is gone: the dashboard asks them to sign in again
    assert response.status_code == 303
    after = await dashboard.client.get("/admin/user/list")
    assert after.status_code == 303
    assert "/admin/login" in after.headers["location"]


async def test_repeated_wrong_passwords_are_rate_limited(browser: Dashboard, staff: Person):
    # given someone guessing a staff member's password (the test limit is 5 per e-mail per minute)
    for _ in range(5):
        assert (await browser.log_in(staff.email, "a wrong guess, again")).status_code == 400

    # when they try once more, even with the right password
    response = await browser.log_in(staff.email, staff.password)

    # then they are told to wait, and are not signed in
    assert response.status_code == 400
    assert "Too many sign-in attempts" in response.text
    assert (await browser.client.get("/admin/user/list")).status_code == 303
