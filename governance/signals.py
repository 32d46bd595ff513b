"""Log-ins and log-outs (admin or API session) are state changes of their own and go to the audit trail."""
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db import transaction
from django.dispatch import receiver

from governance.audit import record_event


@receiver(user_logged_in)
def _logged_in(sender, request, user, **kwargs):
    with transaction.atomic():
        record_event(actor=user, action="user.logged_in", obj=user)


@receiver(user_logged_out)
def _logged_out(sender, request, user, **kwargs):
    if user is not None:
        with transaction.atomic():
            record_event(actor=user, action="user.logged_out", obj=user)


@receiver(user_login_failed)
def _login_failed(sender, credentials, request=None, **kwargs):
    with transaction.atomic():
        record_event(actor="anonymous", action="user.login_failed", data={"username": credentials.get("username", "")})
