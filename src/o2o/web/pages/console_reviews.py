"""评价 in the console: the merchant's reviews (all, or only those waiting for a reply) and the
merchant's one reply each, through ``o2o.reviews.service`` as the API (owners and managers)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query
from fastapi.responses import Response
from pydantic import Field

from o2o.merchants.access import MANAGERS
from o2o.reviews import service as reviews
from o2o.reviews.service import MAX_REPLY
from o2o.schemas import Id, Schema
from o2o.web.context import ConsolePageDep, PageContext, page_router
from o2o.web.forms import Form, FormDataDep, id_or_none
from o2o.web.nav import NavItem, add_nav
from o2o.web.pages.console_listings import require_managers

router = page_router()

add_nav(NavItem("console", "评价", "/console/m/{merchant_id}/reviews", order=40, roles=MANAGERS))

PAGE_SIZE = 20
FILTERS = {"": "全部", "no": "待回复", "yes": "已回复"}


class ReplyForm(Schema):
    text: Annotated[str, Field(min_length=1, max_length=MAX_REPLY)]


REPLY_MESSAGES = {"text": f"请填写回复内容（1–{MAX_REPLY} 字）"}


def _render(
    page: PageContext,
    replied: str = "",
    before: str = "",
    *,
    review_id: int | None = None,
    form: Form[ReplyForm] | None = None,
) -> Response:
    actor, merchant_id = require_managers(page)
    chosen = replied if replied in FILTERS else ""
    before_id = id_or_none(before)
    with page.read() as session:
        found = list(
            reviews.merchant_reviews(
                session,
                merchant_id,
                actor,
                replied={"": None, "no": False, "yes": True}[chosen],
                limit=PAGE_SIZE + 1,
                before_id=before_id,
            )
        )
        more = len(found) > PAGE_SIZE
        found = found[:PAGE_SIZE]
        rows = reviews.reviews_out(session, found)
    return page.render(
        "console/reviews.html",
        rows=rows,
        replied=chosen,
        filters=list(FILTERS.items()),
        next_before=found[-1].id if more and found else None,
        review_id=review_id,
        form=form,
        status_code=form.status if form is not None else 200,
    )


@router.get("/console/m/{merchant_id}/reviews", name="console_reviews")
def review_list(
    page: ConsolePageDep,
    replied: Annotated[str, Query(max_length=10)] = "",
    before: Annotated[str, Query(max_length=40)] = "",
) -> Response:
    return _render(page, replied, before)


@router.post("/console/m/{merchant_id}/reviews/{review_id}/reply")
def reply(page: ConsolePageDep, review_id: Id, data: FormDataDep) -> Response:
    actor, merchant_id = require_managers(page)
    form = Form.parse(ReplyForm, data, messages=REPLY_MESSAGES)
    done = form.submit(
        page.db,
        lambda s, d: reviews.reply(s, actor, merchant_id, review_id, d.text).id,
        field_by_code={"already_replied": "text"},
    )
    if done is None:
        return _render(page, review_id=review_id, form=form)
    return page.redirect(f"/console/m/{merchant_id}/reviews#review-{review_id}", flash="回复已发布")
