// @generated automatically by Diesel CLI.

diesel::table! {
    auth_user (id) {
        id -> Text,
    }
}

diesel::table! {
    user_session (id) {
        id -> Text,
        expires_at -> Timestamptz,
        user_id -> Text,
        created_at -> Timestamptz,
        last_seen_at -> Timestamptz,
        authenticated_at -> Timestamptz,
    }
}

diesel::joinable!(user_session -> auth_user (user_id));

diesel::allow_tables_to_appear_in_same_query!(auth_user, user_session,);
