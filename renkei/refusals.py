"""The numbering authority's refusals of a change of number under a login ticket that My Portal
words apart: written once for the authority's check (registry.tickets) and the portal's page
(portal.numbering), which loads nothing of the registry side's."""

TICKET_EXPIRED = "ticket-expired"  # issued the ticket's span (registry.tickets.LASTS) or more ago
# a second change under one login's ticket: said after the authority checked that the change was
# not made, and made nothing
TICKET_USED = "ticket-used"
# issued later than the authority's clock tells now (by more than renkei.clock.AHEAD): the
# registry side's clock is ahead of the authority's, and a new login's ticket is refused alike
# until the machines' clocks agree
TICKET_FROM_THE_FUTURE = "ticket-from-the-future"
