from wagtail import hooks

from home.rules import EmailDomainRule


@hooks.register("register_wagtail_crm_rule")
def register_email_domain_rule():
    # The name is stored with every segment that uses the rule: never rename it once in use.
    return ("email_domain", EmailDomainRule())
