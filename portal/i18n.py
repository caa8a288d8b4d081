"""The pages' words, Japanese first and English available."""

from __future__ import annotations

from collections.abc import Callable

from portal.sessions import CHALLENGES_PENDING

LANGS = ("ja", "en")

WORDS: dict[str, tuple[str, str]] = {
    "site": ("マイポータル", "My Portal"),
    "skip": ("本文へ移動", "Skip to content"),
    "lang_other": ("English", "日本語"),
    "logout": ("ログアウト", "Log out"),
    "nav_history": ("あなたの情報の照会履歴", "Who looked at your data"),
    "nav_details": ("詳細の申請", "Detail applications"),
    "nav_number": ("個人番号の変更", "New personal number"),
    "nav_counter": ("窓口", "Counter"),
    "nav_search": ("ログ検索", "Log search"),
    "nav_alerts": ("アラート", "Alerts"),
    "nav_holder_logs": ("情報保有機関のログ", "Holder-side logs"),
    "nav_actions": ("運用者の操作", "Operator actions"),
    "nav_integrity": ("監査ログの完全性", "Audit log integrity"),
    "login_title": ("ICカードでログイン", "Log in with your IC card"),
    "login_resident": ("住民の方（マイナンバーカード）", "Residents (My Number Card)"),
    "login_resident_text": ("カードリーダーにマイナンバーカードを置いて、"
                            "利用者証明用暗証番号（数字4桁）でログインします。"
                            "パスワードはありません。",
                            "Place your My Number Card on the reader and log in with its 4-digit "
                            "user-authentication PIN. There is no password."),
    "login_staff": ("市区町村の窓口職員", "Municipal counter staff"),
    "login_oversight": ("監視機関（第三者機関）の職員", "Oversight officers"),
    "login_officer_text": ("職員証（職員用ICカード）でログインします。",
                           "Log in with your officer card."),
    "login_button": ("カードでログイン", "Log in with the card"),
    "refused": ("ログインできませんでした", "The login was refused"),
    "refused_revoked": ("このカードの電子証明書は失効しています。",
                        "The card's certificate is revoked."),
    "refused_expired": ("このカードの電子証明書は有効期限切れです。",
                        "The card's certificate has expired."),
    "refused_unknown": ("このカードは登録されていません。", "This card is not registered."),
    "refused_role": ("このカードではこの画面を利用できません。", "This card cannot use this page."),
    "refused_challenge": ("ログインの有効時間が過ぎました。もう一度お試しください。",
                          "The login took too long. Please try again."),
    "refused_not_under_way": ("このログインは、このブラウザーで進行中のものではありません"
                              "（使用済みか、後から始めたログインに置き換えられました）。"
                              "もう一度お試しください。",
                              "This login is not one under way in this browser (it was used, or "
                              "replaced by logins started after it). Please try again."),
    "refused_too_many": (f"このブラウザーで始められたログインが多すぎたため（同時に進められるのは"
                         f"{CHALLENGES_PENDING}つまで）、このログインは取り消されました。"
                         "もう一度ログインを始めてください。",
                         "Too many logins were started in this browser (at most "
                         f"{CHALLENGES_PENDING} can be under way at once), so this one was "
                         "cancelled. Please start the login again."),
    "refused_unanswered": ("カードの確認先（住民基本台帳ネットワーク）から応答がありません。"
                           "しばらくしてからもう一度お試しください。",
                           "The resident registry, which tells whose card this is, did not "
                           "answer. Please try again later."),
    "refused_other": ("カードの確認に失敗しました。", "The card could not be verified."),
    "refused_crl": ("現在、カードの電子証明書の失効情報を確認できません（カードの問題では"
                    "ありません）。しばらくしてからもう一度お試しください。",
                    "The card's revocation status cannot be checked now (the card is not at "
                    "fault). Please try again later."),
    "refused_clock": ("システムの機器どうしの時計が食い違っているため、ログインを確認できません"
                      "でした（システム側の不具合で、ログインやカードの問題ではありません）。"
                      "しばらくしてからもう一度お試しください。",
                      "The clocks of the system's machines disagree, so your login could not be "
                      "checked (a fault on the system's side, not your login or your card). "
                      "Please try again later."),
    "refused_portal": ("マイポータル側の不具合のため、カードを確認できませんでした"
                       "（カードの問題ではありません）。しばらくしてからもう一度お試しください。",
                       "A fault on My Portal's side kept the card from being checked (the card "
                       "is not at fault). Please try again later."),
    "expired_session": ("一定時間操作がなかったため、ログアウトしました。",
                        "You were logged out after a period without activity."),
    "lifetime_session": ("ログインしてから一定時間が経過したため、ログアウトしました。"
                         "もう一度ログインしてください。",
                         "You were logged out: a login lasts a limited time. Please log in "
                         "again."),
    "form_expired": ("ページを開いたまま一定時間が経過したため、送信された内容は受け付けられません"
                     "でした。もう一度お試しください。",
                     "The page had been open too long, so what you sent was not accepted. "
                     "Please try again."),
    "form_stale": ("このページは古くなっていたため、送信された内容は受け付けられませんでした。"
                   "ページを開き直してから、もう一度お試しください。",
                   "This page was out of date, so what you sent was not accepted. Please open "
                   "the page again and try again."),
    "session_full": ("マイポータルで同時に利用されているセッションが多すぎたため、このセッションは"
                     "終了しました（ログイン中だった場合はログアウトしました）。もう一度お試しください。",
                     "This session was ended because My Portal had too many sessions open at "
                     "once (if you were logged in, you were logged out). Please start again."),
    "session_revoked": ("カードの電子証明書が失効したため、ログアウトしました。",
                        "You were logged out: the card's certificate has been revoked."),
    "session_crl": ("現在、カードの電子証明書の失効情報を確認できないため、ログアウトしました"
                    "（カードの問題ではありません）。しばらくしてからもう一度ログインしてください。",
                    "You were logged out: the card's revocation status cannot be checked now "
                    "(the card is not at fault). Please log in again later."),
    "present_revoked": ("来庁者のカードの電子証明書が失効したため、その方の表示を終了しました。",
                        "The visitor's card certificate has been revoked: their records are "
                        "no longer shown."),
    "present_crl": ("現在、来庁者のカードの電子証明書の失効情報を確認できないため、その方の表示を"
                    "終了しました（カードの問題ではありません）。しばらくしてからもう一度ログイン"
                    "してもらってください。",
                    "The visitor's card's revocation status cannot be checked now (the card is "
                    "not at fault): their records are no longer shown. Please have them log in "
                    "again later."),
    "welcome": ("さん", ""),
    "history_title": ("あなたの情報の照会履歴", "Who looked at your data"),
    "history_intro": ("情報連携基盤が記録した、あなたに関するすべての照会です。"
                      "各行は監査ログの署名付きツリーヘッドに含まれることを確認しています。",
                      "Every exchange about you that the linkage platform logged. Each row is "
                      "checked to be in the audit log under its signed tree head."),
    "filter": ("絞り込み", "Filter"),
    "since": ("期間（開始日）", "From (date)"),
    "until": ("期間（終了日）", "To (date)"),
    "date_malformed": ("日付は「年-月-日」（例：2024-04-01）で入力してください。",
                       "Enter a date as year-month-day (e.g. 2024-04-01)."),
    "date_out_of_range": ("その日付は選べる範囲の外です。もっと近い日付を入力してください。",
                          "That date is out of range: enter a nearer one."),
    "range_reversed": ("期間の終了日が開始日より前です。開始日以降の日付を入力してください。",
                       "The end date is before the start date: enter one on or after it."),
    "holder": ("情報保有機関", "Holder"),
    "all": ("すべて", "All"),
    "apply_filter": ("表示", "Show"),
    "serial": ("①番号", "① Serial"),
    "time": ("②日時", "② Time"),
    "legal_basis": ("③根拠（法令）", "③ Legal basis"),
    "requester": ("④照会元", "④ Requester"),
    "provider": ("⑤照会先", "⑤ Provider"),
    "data_type": ("⑥情報の種類", "⑥ Data type"),
    "outcome": ("結果", "Outcome"),
    "verified": ("検証", "Verified"),
    "verified_yes": ("検証済み", "verified"),
    "verified_no": ("検証できません", "NOT verified"),
    "verified_pending": ("署名待ち（数秒後に検証）", "awaiting the next signed head"),
    "none_found": ("該当する記録はありません。", "No entries."),
    "holder_unnamed": ("この監査ログには「{holder}」を照会元・照会先とする記録が一件もありません"
                       "（機関名の誤りではありませんか）。",
                       "No entry of this log names holder “{holder}”, as requester or provider "
                       "(is the name right?)."),
    "holder_nearest": ("近い名前：{names}", "Nearest names: {names}"),
    "head": ("署名付きツリーヘッド", "Signed tree head"),
    "head_size": ("記録数（照会の記録と運用者の操作）",
                  "leaves (access-log events and operator actions)"),
    "entry_title": ("照会の記録", "Log entry"),
    "proof": ("包含証明", "Inclusion proof"),
    "details_ask": ("照会元・照会先に詳細（⑪提供された情報の内容・⑫用途）を申請する",
                    "Ask the holders for the details (⑪ content, ⑫ purpose)"),
    "details_ask_text": ("申請は情報連携基盤を通じて照会元・照会先の機関に送られ、"
                         "申請と回答は記録されます。",
                         "The application goes to the holders through the platform; the "
                         "application and the answers are logged."),
    "details_title": ("詳細の申請と回答", "Detail applications and answers"),
    "details_none": ("申請はまだありません。", "No applications yet."),
    "applied_at": ("申請日時", "Applied"),
    "about_request": ("対象の照会", "About request"),
    "waiting": ("回答待ち", "waiting for the answer"),
    "answered": ("回答あり", "answered"),
    "all_refused": ("照会されませんでした（連携基盤が拒否）", "not asked: refused by the platform"),
    "overdue": ("{at}までに回答がありません（後から回答があればここに表示されます）",
                "no answer by {at} (an answer that comes later is shown here)"),
    "answer_from": ("回答した機関", "Answered by"),
    "unsent_too_large": ("1通に収まらないため未送付：対象の照会を減らして依頼してください",
                         "too large: ask for fewer entries"),
    "unsent_not_sealed": ("監視機関宛てに封印できませんでした",
                          "could not seal to the oversight body"),
    "unsent_not_sealed_portal": ("マイポータル宛てに封印できませんでした",
                                 "could not seal to My Portal"),
    "unsent_refused_SUSPENDED": ("この機関は{since}から停止中のため、連携基盤は照会していません",
                                 "not asked: the platform holds this holder suspended since "
                                 "{since}"),
    "unsent_refused_NOT_LISTED": ("この機関は名簿上の情報保有機関ではないため、連携基盤は照会して"
                                  "いません",
                                  "not asked: this holder is not in the platform's directory"),
    "side": ("立場", "Side"),
    "content": ("⑪内容", "⑪ Content"),
    "purpose": ("⑫用途", "⑫ Purpose"),
    "operator": ("操作した職員", "Operator"),
    "refresh": ("更新", "Refresh"),
    "number_title": ("個人番号の変更", "A new personal number"),
    "number_text": ("個人番号が漏えいして不正に使われるおそれがあるときは、"
                    "新しい個人番号を請求できます。古い番号は使えなくなり、二度と発行されません。"
                    "新しい番号はこの画面で一度だけ表示します。",
                    "If your personal number may be misused, you can ask for a new one. The old "
                    "one stops working and is never issued again. The new number is shown once, "
                    "on the next page only."),
    "number_reason": ("請求の理由", "Reason"),
    "number_confirm": ("上記を理解し、新しい個人番号を請求します",
                       "I understand; issue me a new number"),
    "number_button": ("新しい個人番号を請求する", "Ask for a new number"),
    "number_done": ("新しい個人番号", "Your new personal number"),
    "number_unanswered": ("付番機関から応答がなかったため、個人番号は変更されていません。"
                          "しばらくしてからもう一度お試しください。",
                          "The numbering authority did not answer, so your personal number was "
                          "not changed. Please try again later."),
    "number_refused": ("付番機関が請求を拒否したため、個人番号は変更されていません。",
                       "The numbering authority refused the request, so your personal number was "
                       "not changed."),
    "number_refused_expired": ("ログインの有効期限が切れています。もう一度ログインしてから"
                               "請求してください。",
                               "Your login has expired. Please log in again and ask again."),
    "number_refused_used": ("このログインでは既に個人番号を変更しています。もう一度ログインしてから"
                            "請求してください。",
                            "A number was already changed on this login. Please log in again "
                            "and ask again."),
    "number_refused_portal": ("マイポータル側の不具合のため、付番機関が請求を受け付けませんでした"
                              "（ログインの問題ではありません）。しばらくしてからもう一度お試し"
                              "ください。",
                              "A fault on My Portal's side kept the numbering authority from "
                              "taking the request (your login is not at fault). Please try again "
                              "later."),
    "number_refused_other": ("ログインを確認できませんでした。もう一度ログインしてから"
                             "請求してください。",
                             "Your login could not be confirmed. Please log in again and ask "
                             "again."),
    "number_unknown": ("付番機関の応答が時間内に届かなかったため、個人番号が変更されたかどうかは"
                       "まだわかりません。もう一度請求してください。同じ請求として扱われるため"
                       "番号が二度変更されることはなく、変更されていれば新しい番号を表示します。",
                       "The numbering authority's answer did not come in time, so whether your "
                       "personal number was changed is not known yet. Please ask again: it is the "
                       "same request, so your number is changed at most once, and if it was "
                       "changed you are shown the new one."),
    "number_pending": ("次の日時に請求された新しい個人番号の結果をまだお知らせしていません。"
                       "もう一度請求してください。同じ請求として扱われるため番号が二度変更されることは"
                       "なく、発行されていればその番号を表示します。",
                       "A request for a new number has no outcome shown yet. Please ask again: "
                       "it is the same request, so your number is changed at most once, and if "
                       "it was issued you are shown it. Asked at:"),
    "number_used": ("このログインでは既に個人番号を変更しました。もう一度変更するには、"
                    "ログインし直してから請求してください。",
                    "A number was already changed on this login: to ask for another change, "
                    "log in again first."),
    "number_issued": ("新しい個人番号が発行されました。", "Your new number was issued."),
    "number_once": ("この番号はこの画面でのみ表示します。控えてください。再表示はできません。",
                    "This number is shown only on this page. Write it down: it cannot be shown "
                    "again."),
    "counter_title": ("窓口での照会履歴の提供", "History at the counter"),
    "counter_present": ("来庁した住民の方にカードをリーダーに置いて"
                        "暗証番号を入力していただきます。",
                        "Ask the resident present to place their card and enter the PIN."),
    "counter_start": ("住民の方のカードで本人確認", "Verify the resident with their card"),
    "counter_print": ("印刷用に表示", "Print"),
    "counter_done": ("終了（次の方へ）", "Finish (next resident)"),
    "counter_staff": ("担当職員", "Staff"),
    "counter_number_text": ("住民の方の請求により新しい個人番号を発行します。"
                            "古い番号は使えなくなり、二度と発行されません。新しい番号は次の画面で一度だけ表示します。",
                            "At the resident's request, a new personal number is issued. The old "
                            "one stops working and is never issued again. The new number is "
                            "shown once, on the next page only."),
    "counter_number_confirm": ("住民の方の請求であることを本人確認のうえ確かめました",
                               "The resident present, verified by their card, asks for it"),
    "counter_logged": ("この操作は監査ログに記録されます。", "This action is logged."),
    "print_title": ("照会履歴（窓口交付）", "Access history (issued at the counter)"),
    "print_now": ("印刷する", "Print"),
    "search_title": ("アクセスログの検索", "Search the access log"),
    "person": ("本人（IDコード）", "Person (ID code)"),
    "pattern": ("パターン", "Pattern"),
    "search": ("検索", "Search"),
    "search_tampered": ("改ざんを検出：記録 {which} は最新の署名付きツリーヘッドで証明されず、"
                        "その後に追記された記録でもありません。記録の行か木のハッシュが書き換え"
                        "られています（表示は署名付きバイトの内容で、検証されていません）。"
                        "詳しくは renkei audit verify で確かめてください。",
                        "TAMPERED: entries {which} are not proved under the latest signed "
                        "head, nor were they appended after it: their rows, or the tree's "
                        "hashes, were changed (shown: what their signed bytes say, unproved). "
                        "`renkei audit verify` says more."),
    "head_untrusted": ("改ざんを検出：ストアの最新のツリーヘッドは監査ログの鍵で署名されて"
                       "いません。このページのどの行も証明されていません。詳しくは "
                       "renkei audit verify で確かめてください。",
                       "TAMPERED: the latest head in the store is not signed by the log's key: "
                       "nothing on this page is proved. `renkei audit verify` says more."),
    "history_tampered": ("改ざんを検出：あなたの照会履歴の記録 {which} は監査ログの最新の署名付き"
                         "ツリーヘッドで証明されず、その後に記録されたものでもありません。監査ログ"
                         "が書き換えられており、記録された内容と異なるおそれがあります（表示は署名"
                         "付きバイトの内容で、検証されていません）。この記録を信頼せず、監視機関"
                         "（個人情報保護委員会）にお知らせください。",
                         "TAMPERED: your history's entries {which} are not proved under the "
                         "audit log's latest signed head, nor were they logged after it: the log "
                         "was changed, and they may not be what was logged (shown: what their "
                         "signed bytes say, unproved). Do not rely on them, and please tell the "
                         "oversight body (the Personal Information Protection Commission)."),
    "history_head_untrusted": ("改ざんを検出：監査ログの最新のツリーヘッドは監査ログの鍵で署名"
                               "されていません。ここに表示したあなたの照会履歴の記録はどれも証明"
                               "されておらず、記録された内容と異なるおそれがあります。この記録を"
                               "信頼せず、監視機関（個人情報保護委員会）にお知らせください。",
                               "TAMPERED: the audit log's latest head is not signed by the log's "
                               "key: none of your history's entries shown here is proved, and "
                               "they may not be what was logged. Do not rely on them, and please "
                               "tell the oversight body (the Personal Information Protection "
                               "Commission)."),
    "next_page": ("次のページ", "Next page"),
    "choose": ("選択", "Choose"),
    "request_logs": ("選んだ照会の情報保有機関側ログを請求", "Request the holder-side logs of "
                                                    "the chosen requests"),
    "holder_logs_title": ("情報保有機関側ログの請求と回答", "Holder-side log requests and answers"),
    "alerts_title": ("アラート（リアルタイム）", "Live alerts"),
    "alerts_none": ("アラートはありません。", "No alerts."),
    "integrity_title": ("監査ログの完全性", "Audit log integrity"),
    "actions_title": ("運用者の操作（情報保有機関の停止・再開・登録・鍵の更新）",
                      "Operator actions (holders suspended, resumed, registered; keys renewed)"),
    "actions_none": ("該当する操作はありません。", "No operator actions."),
    "actions_tampered": ("改ざんを検出：操作 {which} は最新の署名付きツリーヘッドで証明されず、"
                         "その後に記録された操作でもありません。記録の行か木のハッシュが書き"
                         "換えられています（表示は署名付きバイトの内容で、検証されていません）。"
                         "詳しくは renkei audit verify で確かめてください。",
                         "TAMPERED: operator actions {which} are not proved under the latest "
                         "signed head, nor were they logged after it: their rows, or the tree's "
                         "hashes, were changed (shown: what their signed bytes say, unproved). "
                         "`renkei audit verify` says more."),
    "action_subject_unacted": ("この監査ログには「{holder}」を対象とする運用者の操作が一件もありま"
                               "せん（機関名・リンクコード単位の誤りではありませんか）。",
                               "No operator action of this log is on holder or link-code unit "
                               "“{holder}” (is the name right?)."),
    "action": ("操作", "Action"),
    "action_all": ("すべて", "All"),
    "action_by": ("操作した運用者", "Operator"),
    "action_subject": ("対象（情報保有機関・リンクコード単位）", "Holder or link-code unit"),
    "action_SUSPEND": ("停止", "Suspended"),
    "action_RESUME": ("再開", "Resumed"),
    "action_REGISTER": ("登録", "Registered"),
    "action_REKEY": ("リンクコードの鍵の更新", "Link-code key renewed"),
    "action_RENEW": ("鍵とパスワードの更新", "Keys and password renewed"),
    "action_PUBLISH": ("法令で定める情報連携のパターンの公表", "Legal pattern list published"),
    "action_beside": ("検証できません（操作が監査ログの木に入る前の記録）",
                      "not provable (kept before actions were leaves of the log's tree)"),
    "latest_head": ("最新の署名付きツリーヘッド", "Latest signed tree head"),
    "signature": ("署名", "Signature"),
    "signature_ok": ("正しい", "valid"),
    "signature_bad": ("不正", "INVALID"),
    "signature_none": ("署名なし(署名を始める前の監査コンシューマのコミット)",
                       "unsigned (a commit of an audit consumer from before the notes were "
                       "signed)"),
    "consistency": ("直前のヘッドとの整合性", "Consistent with the head before"),
    "root": ("ルートハッシュ", "Root hash"),
    "anchored_head": ("ストアの外に固定された最大のツリーヘッド",
                      "Largest tree head anchored outside the store"),
    "anchor_store": ("監査ストアとの照合", "The store against it"),
    "anchor_holds": ("ストアは固定されたすべてのヘッドと、監査コンシューマが最後のコミットに"
                     "記録したツリーを含み、その後は追記のみ",
                     "the store holds every anchored head and the tree the audit consumer noted "
                     "with its last commit, and has only grown since"),
    "anchored_count": ("照合した固定ヘッドの数", "Anchored heads checked"),
    "anchor_holds_heads": ("ストアは固定されたすべてのヘッドを含み、その後は追記のみ",
                           "the store holds every anchored head and has only grown since"),
    "commit_offset": ("監査トピックのオフセット", "Offset on the audit topic"),
    "commit_checked": ("照合した監査コンシューマの最後のコミット",
                       "The audit consumer's last commit checked"),
    "commit_none": ("ツリーを記録した監査コンシューマのコミットはありません。最大の固定ヘッド"
                    "より後の記録は照合されていません。",
                    "No commit of the audit consumer noting the tree: the entries after the "
                    "largest anchored head are not checked."),
    "anchor_none": ("固定されたヘッドはまだありません。", "No head anchored yet."),
    "forbidden": ("この操作はできません。", "This is not allowed."),
    "not_found": ("見つかりません。", "Not found."),
    "not_an_exchange": ("この記録はマイポータルや窓口での操作の記録で、機関の間の情報連携では"
                        "ありません。詳細は申請できません。申請は送っていません。",
                        "This entry is an action in My Portal or at a counter, not an exchange "
                        "between holders: it has no details to ask for. Nothing was requested."),
    "portal_left_out": ("選んだ記録のうち{count}件は照会していません。マイポータルや窓口での操作の"
                        "記録で、機関の間の情報連携ではないため、情報保有機関に照会するものが"
                        "ありません。",
                        "{count} of the entries chosen were not asked about: they record actions "
                        "in My Portal or at a counter, not exchanges between holders, so no "
                        "holder has a side of them to send."),
    "chosen_unproved": ("選んだ記録に証明されないものがあります。情報保有機関には何も請求して"
                        "いません。",
                        "Some entries chosen are not proved: no holder was asked for anything."),
    "entry_unproved": ("この記録は監査ログの署名付きツリーヘッドで証明されないため、詳細は申請"
                       "できません。申請は送っていません。",
                       "This entry is not proved under the audit log's signed head: no details "
                       "can be asked about it. Nothing was requested."),
    "approval_unproved": ("この照会の承認の記録が監査ログの署名付きツリーヘッドで証明されないため、"
                          "詳細は申請できません。申請は送っていません。",
                          "The approval of this exchange is not proved under the audit log's "
                          "signed head: no details can be asked about it. Nothing was "
                          "requested."),
    "no_holder": ("照会できる情報保有機関がありません（記録に名のあるのはサービスだけです）。"
                  "請求は送っていません。",
                  "No holder to ask: the entries name only services of the platform. Nothing "
                  "was requested."),
    "not_asked_inactive": ("{name}（{holder}）は{since}から停止中のため照会していません。",
                           "{name} ({holder}) is inactive since {since}: not asked."),
    "not_asked_unknown": ("{holder}は名簿上の情報保有機関ではないため照会していません。",
                          "{holder} is not a holder in the directory: not asked."),
    "too_many_chosen": ("一度に照会できるのは検索結果の1ページ分の記録までです。"
                        "請求は送っていません。",
                        "At most one page of search results can be asked about at a time. "
                        "Nothing was requested."),
    "history_unavailable": ("アクセス記録を今は表示できません。しばらくしてから"
                            "もう一度お試しください。",
                            "The access history cannot be shown right now. Please try again "
                            "later."),
    "kind": ("種類", "Kind"),
    "reason": ("理由", "Reason"),
}

STEPS: dict[str, tuple[str, str]] = {  # the access log's kinds and outcomes, in words
    "BINDING": ("紐付け", "Binding"),
    "LINKAGE": ("情報照会", "Linkage request"),
    "ANSWER": ("情報提供", "Answer"),
    "PORTAL": ("マイポータル", "My Portal"),
    "OVERSIGHT": ("監督機関の請求", "Oversight request"),
    "REKEY": ("鍵の更新", "Re-keying"),
    "MESSAGE": ("メッセージ", "Message"),
    "APPROVED": ("承認", "approved"),
    "REJECTED": ("却下", "rejected"),
    "REQUESTED": ("請求", "requested"),
    "REKEYED": ("更新済み", "re-keyed"),
    "FOUND": ("該当あり", "found"),
    "NOT_FOUND": ("該当なし", "not found"),
    "REFUSED": ("拒否", "refused"),
    "TIMED_OUT": ("時間切れ", "timed out"),
    "UNREADABLE": ("読めない回答", "unreadable answer"),
    "REQUESTER": ("照会元", "requester"),  # a holder's log: its side, its outcomes above
    "PROVIDER": ("照会先", "provider"),
    "NUMBER_CHANGE_ASKED": ("個人番号の変更を請求", "new personal number asked for"),
    "NUMBER_CHANGED": ("個人番号を変更", "personal number changed"),
    "DETAIL_APPLIED": ("詳細の開示を申請", "details applied for"),
    "DETAIL_ANSWERED": ("詳細の開示に回答", "details answered"),
    "DETAIL_REFUSED": ("詳細の開示を基盤が拒否", "details refused by the platform"),
    "APPLICATION": ("詳細の開示の申請", "Detail application"),
    "COUNTER_VIEWED": ("窓口で照会履歴を閲覧", "history viewed at the counter"),
    "COUNTER_PRINTED": ("窓口で照会履歴を印刷", "history printed at the counter"),
}


def _index(lang: str) -> int:
    """Where `lang`'s words are in each pair (Japanese for a language it has none in)."""
    return LANGS.index(lang) if lang in LANGS else 0


def said(lang: str) -> Callable[[str], str]:
    """A kind or outcome of the access log in the words of `lang` (one without words: itself)."""
    index = _index(lang)
    return lambda code: STEPS[code][index] if code in STEPS else code


def words(lang: str) -> dict[str, str]:
    index = _index(lang)
    return {key: pair[index] for key, pair in WORDS.items()}
