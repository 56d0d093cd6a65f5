from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-11-30T19:12:50:000000"
VERSION = "1.38.0"
DESCRIPTION = "growth constraints: one redemption per code and user, uses within the limit"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="flick", description=DESCRIPTION)

    # What the column definitions cannot say; the money code relies on each of these.
    manager.add_raw(_CONSTRAINTS)
    return manager

async def _CONSTRAINTS() -> None:  # noqa: N802 - Piccolo's raw step
    from flick.models.db import DB

    # A code counts at most once per user, and never beyond its uses (also under concurrency:
    # redemptions lock the code's row, and the database refuses a count past the limit).
    await DB.run_ddl(
        'CREATE UNIQUE INDEX promo_redemptions_code_user ON promo_redemptions (code, "user")'
    )
    await DB.run_ddl(
        "ALTER TABLE promo_codes ADD CONSTRAINT promo_codes_used_within_limit "
        "CHECK (used >= 0 AND used <= max_uses AND credits > 0)"
    )
    # Telegram repeats a subscription's invoice payload on every renewal: one row per user.
    await DB.run_ddl(
        'CREATE UNIQUE INDEX subscriptions_user_payload ON subscriptions ("user", payload)'
    )
    # Expiring plan credits are a part of the balance, never more.
    await DB.run_ddl(
        "ALTER TABLE users ADD CONSTRAINT users_plan_credits_within_balance "
        "CHECK (plan_credits >= 0 AND plan_credits <= balance)"
    )
    await DB.run_ddl(
        "ALTER TABLE generations ADD CONSTRAINT generations_plan_charged_within_charged "
        "CHECK (plan_charged >= 0 AND plan_charged <= charged)"
    )
    await DB.run_ddl(
        "ALTER TABLE referrals ADD CONSTRAINT referrals_not_oneself CHECK (inviter <> invitee)"
    )
