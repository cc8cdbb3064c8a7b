"""Staff keeping the service catalogue: list it, edit a service, every change audited."""

from __future__ import annotations

import secrets

import pytest_asyncio

from storage.models import AuditLog, ServiceType
from tests.admin.conftest import Dashboard, Person


@pytest_asyncio.fixture
async def retired_service(db: None) -> ServiceType:
    """A service type nobody can book (inactive), so editing it leaves the live catalogue alone.
    Made as a row: the catalogue has no create action, its entries come from migrations."""
    return await ServiceType.create(id=f"test_{secrets.token_hex(4)}", name="Window clean",
                                    description="Inside and out.", base_price_minor=1500,
                                    min_duration_minutes=60, active=False, sort_order=900)


def edit_form(service: ServiceType, **changes: str) -> dict[str, str]:
    """The edit form as the browser submits it (an unticked checkbox is simply absent)."""
    form = {"name": service.name, "description": service.description,
            "base_price_minor": str(service.base_price_minor),
            "min_duration_minutes": str(service.min_duration_minutes), "sort_order": str(service.sort_order),
            "requires_photo_evidence": "on" if service.requires_photo_evidence else None, **changes}
    return {k: v for k, v in form.items() if v is not None}


async def test_catalogue_lists_the_services_in_display_order(dashboard: Dashboard):
    # given the catalogue from the migrations
    # when staff open the service types page
    page = await dashboard.client.get("/admin/service-type/list", params={"page_size": 100})

    # then the services appear in display order, with their base price
    assert page.status_code == 200, page.text
    assert page.text.index("Standard clean") < page.text.index("Deep clean") < page.text.index("Oven clean")
    assert "1800" in page.text


async def test_editing_a_service_records_exactly_what_changed(dashboard: Dashboard, staff: Person,
                                                               retired_service: ServiceType):
    # given an inactive service type
    # when staff rename it and change its price and minimum duration
    response = await dashboard.submit_form(
        "/admin/service-type/edit", params={"pk": retired_service.id},
        **edit_form(retired_service, name="Window & frame clean", base_price_minor="1750",
                    min_duration_minutes="90"))

    # then the service holds the new values and stays inactive
    assert response.status_code == 303, response.text
    saved = await ServiceType.get(id=retired_service.id)
    assert (saved.name, saved.base_price_minor, saved.min_duration_minutes, saved.active) == (
        "Window & frame clean", 1750, 90, False)
    # and the audit row holds only what changed, by whom
    row = await AuditLog.get(entity_id=retired_service.id, action="service_type.updated")
    assert str(row.actor_id) == staff.id
    assert row.before == {"name": "Window clean", "base_price_minor": 1500, "min_duration_minutes": 60}
    assert row.after == {"name": "Window & frame clean", "base_price_minor": 1750, "min_duration_minutes": 90}


async def test_a_negative_price_is_shown_on_the_form_and_not_saved(dashboard: Dashboard,
                                                                   retired_service: ServiceType):
    # given an inactive service type
    # when staff enter a negative base price
    response = await dashboard.submit_form("/admin/service-type/edit", params={"pk": retired_service.id},
                                           **edit_form(retired_service, base_price_minor="-5"))

    # then the form comes back with the error, and nothing changed or was audited
    assert response.status_code == 422
    assert (await ServiceType.get(id=retired_service.id)).base_price_minor == 1500
    assert not await AuditLog.filter(entity_id=retired_service.id).exists()


async def test_service_types_cannot_be_created_or_deleted(dashboard: Dashboard, retired_service: ServiceType):
    # given a service type
    # when staff open the create form, or call the delete action on it
    create = await dashboard.client.get("/admin/service-type/create")
    delete = await dashboard.batch_action("service-type", "delete", [retired_service.id])

    # then both are refused, and the service is still there
    assert create.status_code == 403
    assert delete.status_code == 400
    assert await ServiceType.filter(id=retired_service.id).exists()


async def test_staff_decide_which_services_need_photos_to_complete(dashboard: Dashboard,
                                                                  retired_service: ServiceType):
    # given a service type that asks for photo evidence
    await ServiceType.filter(id=retired_service.id).update(requires_photo_evidence=True)
    retired_service.requires_photo_evidence = True
    # when staff untick "Photos required to complete" (an unticked box is not sent)
    response = await dashboard.submit_form("/admin/service-type/edit", params={"pk": retired_service.id},
                                           **edit_form(retired_service, requires_photo_evidence=None))
    # then completing it no longer needs a photo, and the change is audited
    assert response.status_code == 303, response.text
    assert (await ServiceType.get(id=retired_service.id)).requires_photo_evidence is False
    row = await AuditLog.get(entity_id=retired_service.id, action="service_type.updated")
    assert (row.before, row.after) == ({"requires_photo_evidence": True}, {"requires_photo_evidence": False})
