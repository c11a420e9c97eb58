# %% [markdown]
# # spigot_geometry

# %%
print(1 + 1)
