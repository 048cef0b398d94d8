"""Brain-tumour MRI classifier: the app's entry point (streamlit run streamlit_app.py)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import streamlit as st  # noqa: E402

from app_pages.shared import sidebar  # noqa: E402

st.set_page_config(page_title="Brain MRI classifier", page_icon="🧠", layout="wide")

pages = [
    st.Page(
        "app_pages/dataset.py",
        title="Dataset",
        icon=":material/folder_open:",
        url_path="dataset",
        default=True,
    ),
    st.Page("app_pages/train.py", title="Train", icon=":material/model_training:", url_path="train"),
    st.Page("app_pages/results.py", title="Results", icon=":material/analytics:", url_path="results"),
    st.Page("app_pages/classify.py", title="Classify", icon=":material/image_search:", url_path="classify"),
    st.Page("app_pages/compare.py", title="Compare runs", icon=":material/compare:", url_path="compare"),
]
page = st.navigation(pages)
sidebar()
page.run()
