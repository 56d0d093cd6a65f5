"""What a user's actor does with each message, by feature: plain async functions taking the actor.

Like aiogram's routers take the bot, each handler gets the `UserActor` and the message. Which
handler answers which event, command or button is written down once, in `routes`.
"""
