"""GET /api/v1/bookings/{id}/invoice over HTTP: the PDF for the booking's client and staff; the
cleaner and other clients are told there is no such booking; before it exists, a 409 saying why."""

from __future__ import annotations

from uuid import UUID

from core.events import EventType
from core.ids import new_id
from jobs.invoices import invoice_booking
from jobs.worker import Job
from storage.files import file_store
from storage.models import Booking, Invoice
from tests.edge.test_bookings import bookable, booking_body
from tests.edge.test_supply import assert_problem, make_staff
from tests.storage.test_bookings import starting_soon


async def test_only_the_client_and_staff_download_the_invoice_pdf(api, db, settings, make_account):
    # given a client's booking with a cleaner, another client and a staff member
    cleaner, client, other = (await bookable(make_account, settings), make_account(role="client"),
                              make_account(role="client"))
    staff = await make_staff(api, settings)
    made = api.post("/api/v1/bookings", headers=client.auth, json=booking_body(cleaner, starting_soon(), hours=2.5))
    booking_id = made.json()["booking"]["id"]
    url = f"/api/v1/bookings/{booking_id}/invoice"
    # before the work is done there is no invoice to have
    assert_problem(api.get(url, headers=client.auth), 409, code="booking_not_completed")
    # when the cleaner completes it
    for move in ("accept", "on-the-way", "start", "complete"):
        assert api.post(f"/api/v1/bookings/{booking_id}/{move}", headers=cleaner.auth).status_code == 200
    # then, until the invoices worker has built it, the client is told it is on its way
    assert_problem(api.get(url, headers=client.auth), 409, code="invoice_pending")
    # when the invoices worker handles booking.completed
    booking = await Booking.get(id=UUID(booking_id))
    payload = {"booking_id": booking_id, "state": booking.state, "client_id": client.id,
               "cleaner_id": cleaner.id, "starts_at": booking.starts_at.isoformat(), "by": "cleaner"}
    await invoice_booking(Job(new_id(), EventType.BOOKING_COMPLETED, payload, 1), settings, file_store(settings))
    invoice = await Invoice.get(booking_id=booking.id)
    # then the client and staff download the PDF
    for auth in (client.auth, staff):
        response = api.get(url, headers=auth)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/pdf"
        assert response.headers["content-disposition"] == f'attachment; filename="spotless-invoice-{invoice.number}.pdf"'
        assert response.content.startswith(b"%PDF")
    # and the cleaner and another client are told there is no such booking
    for outsider in (cleaner, other):
        assert_problem(api.get(url, headers=outsider.auth), 404)


async def test_bad_invoice_requests_are_problems_not_errors(api, db, make_account):
    client = make_account(role="client")
    assert_problem(api.get(f"/api/v1/bookings/{new_id()}/invoice"), 401)
    assert_problem(api.get(f"/api/v1/bookings/{new_id()}/invoice", headers=client.auth), 404)
    assert_problem(api.get("/api/v1/bookings/not-a-uuid/invoice", headers=client.auth), 422, field="id")


def test_the_api_document_describes_the_invoice_as_a_pdf(api):
    document = api.get("/api/v1/docs/openapi.json").json()
    operation = document["paths"]["/api/v1/bookings/{booking_id}/invoice"]["get"]
    assert "application/pdf" in operation["responses"]["200"]["content"]
