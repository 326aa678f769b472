from wagtail import hooks


@hooks.register("register_wagtail_crm_rule")
def register_email_domain_rule():
    # Imported here, not at the top: only wagtail_crm calls this hook, so the site still starts without it.
    from home.rules import EmailDomainRule

    # The name is stored with every segment that uses the rule: never rename it once in use.
    return ("email_domain", EmailDomainRule())
